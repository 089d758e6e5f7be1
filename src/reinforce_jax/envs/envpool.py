"""envpool: C++ environment pools, stepped from inside the compiled program or from the host.

`envpool <https://github.com/sail-sg/envpool>`_ steps batches of environments in C++ threads. Its
XLA interface (``handle, recv, send, step = pool.xla()``) can be called inside ``jax.jit`` and
``lax.scan`` (the pool's state lives in C++; the handle threads the calls in order), but not
``vmap``-ped: seeds x environments therefore go into *one* pool (see
:mod:`reinforce_jax.rollout.pool`).

envpool resets on the *next* step: the step after an episode ended only resets (its action is
ignored, its reward is 0) and returns the new episode's first observation; the step that ended the
episode returns the true final observation. The compiled source masks those reset-only steps out
of learning and statistics; :class:`EnvpoolVectorEnv` converts them to the same-step autoreset of
:class:`~reinforce_jax.envs.vector.VectorEnv` for the host trainer.

envpool has Linux x86-64 wheels only; :func:`available` says whether it can be used here.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from typing import Any

import numpy as np

from reinforce_jax.envs.spec import Box, Discrete, EnvSpec
from reinforce_jax.errors import ConfigError
from reinforce_jax.system import usable_cores

# gymnasium ids with an envpool twin (same dynamics, same time limit, same action space).
# envpool's LunarLanderContinuous clips its float actions into [-1, 1], as gymnasium's does.
ENVPOOL_ENVS = (
    "LunarLander-v3", "CartPole-v1", "Acrobot-v1", "MountainCar-v0", "LunarLanderContinuous-v3",
)  # fmt: skip
# ids `--trainer auto` trains on envpool: its defaults solve more seeds, faster, than the host
# trainer's (README, "envpool" and "Continuous actions").
AUTO_ENVS = ("LunarLander-v3", "LunarLanderContinuous-v3")

# The envpool releases tested here, as pyproject's range: at least the first, below the second.
# 1.2.6 and 1.2.7 build their XLA handlers for a newer FFI API than jaxlib 0.10 registers.
TESTED = ((1, 2, 5), (1, 2, 6))


def installed_version() -> str:
    """The installed envpool's version, from its package metadata."""
    from importlib.metadata import version  # not envpool.__version__: its whole __init__ runs

    return version("envpool")


def unavailable() -> str | None:
    """Why envpool cannot serve a trainer here, or None; found without importing it."""
    if importlib.util.find_spec("envpool") is None:
        return "envpool is not installed (it has wheels for Linux x86-64 only)"
    installed = installed_version()
    release = tuple(int(p) for p in installed.split("+")[0].split(".")[:3] if p.isdigit())
    if not TESTED[0] <= release < TESTED[1]:
        tested = ".".join(map(str, TESTED[0]))
        return (f"envpool {installed} is installed, but reinforce-jax runs envpool {tested} (later "
                f"releases build XLA handlers this jaxlib cannot load): pip install 'envpool=={tested}'")  # fmt: skip
    return None


def available() -> bool:
    """Whether envpool can serve a trainer here: installed, in the tested releases."""
    return unavailable() is None


def fallback_notice(why: str) -> str:
    """The start-up line of a run that falls back from envpool to the host trainer."""
    return f"notice: {why}; training on the host trainer (gymnasium), which is slower"


def has_pool(spec: EnvSpec) -> bool:
    """``spec`` has an envpool twin we can train on (no gymnasium arguments given)."""
    return spec.env_id in ENVPOOL_ENVS and not spec.env_args


# envpool's families that hold ENVPOOL_ENVS: the only ones :func:`make_pool` registers.
_FAMILIES = ("envpool.box2d.registration", "envpool.classic_control.registration")


class _Deferred(types.ModuleType):
    """``envpool`` whose ``__init__`` has not run yet: its submodules import as usual; the first
    name asked of it runs the real ``__init__`` here, so the module becomes envpool whole."""

    def __getattr__(self, name: str) -> Any:
        spec = self.__dict__["__spec__"]
        self.__class__ = types.ModuleType  # once: the real __init__ fills in every name
        spec.loader.exec_module(self)
        return getattr(self, name)


def _envpool_make() -> Any:
    """``envpool.make`` with only the families we step registered.

    ``import envpool`` registers every family it ships (Atari, MuJoCo, Jumanji, ...), loading
    their libraries and matplotlib: 1.3-2 s of a 30 s LunarLander run on the 2-core machine,
    against 0.1-0.25 s for its registry and the two families :data:`ENVPOOL_ENVS` come from.
    Where envpool is already imported (whole or deferred) it is used as it is.
    """
    if "envpool" not in sys.modules:
        spec = importlib.util.find_spec("envpool")
        if spec is None or spec.loader is None or spec.submodule_search_locations is None:
            raise ConfigError("envpool is not installed (pip install envpool; Linux x86-64 only)")
        module = _Deferred("envpool")
        module.__spec__, module.__file__ = spec, spec.origin
        module.__path__ = list(spec.submodule_search_locations)
        module.__package__, module.__loader__ = "envpool", spec.loader
        sys.modules["envpool"] = module
    for family in _FAMILIES:
        importlib.import_module(family)
    return importlib.import_module("envpool.registration").make


def default_threads(num_envs: int) -> int:
    """One worker thread per core this process may use, at most one per environment."""
    return max(1, min(usable_cores(), num_envs))


def check(spec: EnvSpec) -> None:
    """:class:`ConfigError` unless ``spec`` can run on envpool here."""
    if spec.env_args:
        raise ConfigError(
            f"envpool environments take no gymnasium arguments (got {spec.env_args}); "
            "the host trainer can use them"
        )
    if spec.env_id not in ENVPOOL_ENVS:
        raise ConfigError(
            f"{spec.env_id} has no envpool version here (available: {', '.join(ENVPOOL_ENVS)}); "
            "the host trainer can run it"
        )
    if (why := unavailable()) is not None:
        raise ConfigError(why)


def _action_space(space: Any) -> Discrete | Box:
    """envpool's action space as our plain value (to compare with gymnasium's)."""
    if hasattr(space, "n"):
        return Discrete(int(space.n))
    low = tuple(float(x) for x in np.asarray(space.low, np.float32).reshape(-1))
    high = tuple(float(x) for x in np.asarray(space.high, np.float32).reshape(-1))
    return Box(low, high, tuple(int(n) for n in space.shape))


def action_dtype(spec: EnvSpec) -> Any:
    """The dtype envpool's step takes for ``spec``'s actions."""
    return np.int32 if isinstance(spec.action_space, Discrete) else np.float32


def make_pool(spec: EnvSpec, num_envs: int, seed: int, num_threads: int | None = None) -> Any:
    """A synchronous gymnasium-style envpool of ``num_envs`` environments; environment ``i`` is
    seeded ``seed + i``. Its observation shape, action space and time limit are checked against
    ``spec`` (gymnasium's)."""
    check(spec)
    pool = _envpool_make()(
        spec.env_id,
        env_type="gymnasium",
        num_envs=num_envs,
        batch_size=num_envs,
        num_threads=num_threads or default_threads(num_envs),
        seed=int(seed) % 2**31,
    )
    shape = tuple(pool.observation_space.shape)
    space = _action_space(pool.action_space)
    limit = pool.spec.config.max_episode_steps
    if (
        shape != tuple(spec.obs_shape)
        or space != spec.action_space
        or limit != spec.max_episode_steps
    ):
        pool.close()
        raise ConfigError(
            f"envpool's {spec.env_id} (obs {shape}, actions {space}, limit {limit}) differs from "
            f"gymnasium's (obs {tuple(spec.obs_shape)}, actions {spec.action_space}, "
            f"limit {spec.max_episode_steps})"
        )
    return pool


class EnvpoolVectorEnv:
    """An envpool as a :class:`~reinforce_jax.envs.vector.VectorEnv` (same-step autoreset).

    Environments whose episode ended at a step are reset right away (only those), so the
    observation returned is the new episode's first and ``final_obs`` the old one's last. The
    pool is made at the first :meth:`reset` (its seed fixes every episode).
    """

    def __init__(self, env_id: str, num_envs: int, env_args: dict | None = None):
        from reinforce_jax.envs.registry import env_spec

        self.spec = env_spec(env_id, env_args)
        check(self.spec)
        self.num_envs = num_envs
        self.pool: Any = None

    def reset(self, seed: int) -> np.ndarray:
        if self.pool is not None:
            self.pool.close()
        self.pool = make_pool(self.spec, self.num_envs, seed)
        obs, _ = self.pool.reset()
        return np.asarray(obs, np.float32)

    def step(self, actions: np.ndarray):
        from reinforce_jax.envs.vector import VectorStep

        actions = np.asarray(actions, action_dtype(self.spec))
        obs, reward, terminated, truncated, _ = self.pool.step(actions)
        obs = np.asarray(obs, np.float32)
        terminated, truncated = np.asarray(terminated, bool), np.asarray(truncated, bool)
        done = terminated | truncated
        final = obs
        if done.any():
            final = obs.copy()
            ids = np.flatnonzero(done).astype(np.int32)
            fresh, _ = self.pool.reset(ids)
            obs = obs.copy()
            obs[ids] = fresh
        return VectorStep(obs, np.asarray(reward, np.float32), terminated, truncated, final)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None


__all__ = [
    "AUTO_ENVS",
    "ENVPOOL_ENVS",
    "EnvpoolVectorEnv",
    "action_dtype",
    "available",
    "default_threads",
    "has_pool",
    "make_pool",
]
