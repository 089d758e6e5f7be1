"""Videos of evaluation episodes: gymnasium ``rgb_array`` frames encoded to MP4 or GIF, headless."""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np

from reinforce_jax.agent import make_host_act
from reinforce_jax.config import Config
from reinforce_jax.envs.registry import env_spec, make_gym_env
from reinforce_jax.errors import ConfigError
from reinforce_jax.policies import policy_act


def record(
    cfg: Config,
    params: Any,
    env_id: str,
    episodes: int,
    seed: int,
    greedy: bool,
    every: int = 1,
) -> tuple[list[np.ndarray], list[float], float]:
    """Every ``every``-th frame of ``episodes`` episodes (seeds seed, seed+1, ...), their returns,
    and the frame rate that plays them at the episodes' speed.

    Frames that would be dropped are never rendered: rendering (MuJoCo's off-screen EGL above all)
    costs far more than a policy step."""
    # Headless: pygame renders off-screen; no display or sound device is needed.
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    os.environ.setdefault("MUJOCO_GL", "egl")  # MuJoCo renders off-screen through EGL
    env = make_gym_env(env_id, render_mode="rgb_array", **cfg.env_args)
    try:
        act = make_host_act(policy_act(cfg, env_spec(env_id, cfg.env_args), greedy))
        fps = float(env.metadata.get("render_fps", 30)) / every
        key = jax.random.PRNGKey(seed)
        frames, returns, count = [], [], 0

        def keep() -> None:  # one frame in ``every``, counted across the episodes
            nonlocal count
            if count % every == 0:
                frames.append(env.render())
            count += 1

        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            keep()
            total, done = 0.0, False
            while not done:
                action, key = act(params, np.asarray(obs, np.float32)[None], key)
                action = np.asarray(action)[0]
                obs, reward, terminated, truncated, _ = env.step(
                    action if action.ndim else int(action)
                )
                keep()
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
        return frames, returns, fps
    finally:
        env.close()


def write_video(frames: list[np.ndarray], path: str | Path, fps: float) -> Path:
    """Encode frames to ``path`` (.mp4 via imageio-ffmpeg's bundled ffmpeg, .gif via Pillow) at
    ``fps`` frames per second. Written to a temporary file, then renamed."""
    import imageio.v2 as imageio

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".mp4", ".gif"):
        raise ConfigError(f"video output must end in .mp4 or .gif, got {path.name!r}")
    if not path.parent.is_dir():
        raise ConfigError(f"cannot write {path}: directory {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(suffix=suffix, dir=path.parent, prefix=f".{path.stem}.")
    os.close(fd)
    os.chmod(tmp, 0o644)
    try:
        with warnings.catch_warnings():
            # imageio-ffmpeg starts ffmpeg with fork+exec; Python warns because JAX has threads.
            warnings.simplefilter("ignore", RuntimeWarning)
            if suffix == ".mp4":
                imageio.mimsave(tmp, frames, fps=fps, codec="libx264", quality=6,
                                macro_block_size=8)  # fmt: skip
            else:
                imageio.mimsave(tmp, frames, duration=1000.0 / fps, loop=0)
        os.replace(tmp, path)
    except PermissionError:
        Path(tmp).unlink(missing_ok=True)
        raise ConfigError(f"cannot write {path}: permission denied") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
