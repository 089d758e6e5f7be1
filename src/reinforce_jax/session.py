"""A training session: runs a trainer and turns its events into run files and console lines.

This is the only layer (with the CLI) that prints or writes; trainers just yield events.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import jax
import numpy as np

from reinforce_jax.config import Config, ConfigError
from reinforce_jax.envs import EnvInfo
from reinforce_jax.host import num_host_updates
from reinforce_jax.loggers import EVAL_NAMES, TRAIN_NAMES, make_sinks
from reinforce_jax.plots import plot_curves
from reinforce_jax.runfiles import RunDir, RunError, default_run_name
from reinforce_jax.trainer import num_updates_for


def resolve_trainer(cfg: Config, info: EnvInfo) -> str:
    if cfg.trainer != "auto":
        return cfg.trainer
    return "compiled" if info.has_jax else "host"


def make_events(cfg: Config, info: EnvInfo, trainer: str, checkpoint: dict | None = None):
    """The trainer's event generator; settings it cannot run are refused here, before any file."""
    if cfg.obs_norm and trainer != "host":
        raise ConfigError("obs_norm is supported by the host trainer only (--trainer host)")
    if cfg.num_seeds != 1 and trainer != "compiled":
        raise ConfigError(f"the {trainer} trainer runs one seed at a time; use --num-seeds 1")
    if trainer == "notebook":
        from reinforce_jax.notebook import train_notebook

        return train_notebook(cfg, info, checkpoint)
    if trainer == "compiled":
        from reinforce_jax.trainer import train_compiled

        if not info.has_jax:
            raise ConfigError(f"{info.env_id} has no JAX implementation; use --trainer host")
        return train_compiled(cfg, info.solve_threshold, checkpoint)
    from reinforce_jax.host import train_host

    return train_host(cfg, info, checkpoint)


def _notebook_line(r: dict[str, Any]) -> str:
    return (f"Episode: {r['episode']}\tEpisode Return: {r['episode_return']}\t"
            f"Average Episode Return: {r['average_episode_return']}\t"
            f"Evaluator Episode Return: {r['eval_mean']}")  # fmt: skip


def _batched_line(rows: list[dict[str, Any]], last_return: float) -> str:
    means = np.array([r["eval_mean"] for r in rows])
    solved = sum(r["solved"] for r in rows)
    r = rows[0]
    head = (
        f"Update: {r['update']}\tEnv steps: {r['env_steps']}\tEpisode Return: {last_return:.1f}\t"
    )
    if len(rows) == 1:
        return (
            head
            + f"Evaluator Episode Return: {r['eval_mean']:.1f} ± {r['eval_std']:.1f}\t[{r['wall_time']:.1f}s]"
        )
    return head + (f"Evaluator mean over {len(rows)} seeds: {means.mean():.1f} "
                   f"(min {means.min():.1f})\tsolved: {solved}/{len(rows)}\t[{r['wall_time']:.1f}s]")  # fmt: skip


def run_training(
    cfg: Config,
    info: EnvInfo,
    run_dir: str | Path | None,
    quiet: bool = False,
    out: TextIO | None = None,
    resume: bool = False,
    track: bool = False,
) -> RunDir:
    """Train ``cfg`` into a new run directory (or continue ``run_dir`` with ``resume``)."""
    out = out or sys.stdout
    if track and importlib.util.find_spec("wandb") is None:
        raise ConfigError("--track needs Weights & Biases: pip install wandb")
    say = (lambda *a: None) if quiet else (lambda line: print(line, file=out, flush=True))
    trainer = resolve_trainer(cfg, info)
    cfg = cfg.replace(trainer=trainer)
    checkpoint = None
    if resume:
        run = RunDir.open(run_dir)
        status = (
            run.read_json("status.json").get("status")
            if (run.path / "status.json").exists()
            else None
        )
        if status == "finished":
            raise RunError(f"run {run.path} has already finished; nothing to resume")
        checkpoint = run.load_checkpoint()
        counts = checkpoint or {"train_rows": 0, "eval_rows": 0}
        path = run.path
        events = make_events(cfg, info, trainer, checkpoint)

        def begin() -> None:  # once the trainer has accepted the checkpoint
            run.truncate_jsonl("train.jsonl", counts["train_rows"])
            run.truncate_jsonl("eval.jsonl", counts["eval_rows"])
            run.set_status("running")
    else:
        events = make_events(cfg, info, trainer)
        path = Path(run_dir) if run_dir else Path("runs") / default_run_name(cfg)
        env_facts = {"obs_shape": list(info.obs_shape), "num_actions": info.num_actions,
                     "max_episode_steps": info.max_episode_steps,
                     "reward_threshold": info.reward_threshold,
                     "solve_threshold": info.solve_threshold}  # fmt: skip
        run = RunDir.create(path, cfg, env_facts)

        def begin() -> None:
            pass

    verb = "Resuming" if resume else "Training"
    say(f"{verb} {cfg.env_id} with the {trainer} trainer (preset {cfg.preset}, seed {cfg.seed}"
        + (f", {cfg.num_seeds} seeds" if cfg.num_seeds > 1 else "") + f") -> {path}")  # fmt: skip
    if trainer == "notebook":
        total, unit = cfg.num_episodes, "episodes"
    else:
        total = num_updates_for(cfg) if trainer == "compiled" else num_host_updates(cfg)
        unit = "updates"
    stride = max(1, total // cfg.eval_every // 20)  # console lines for batched trainers
    solved_seeds: set[int] = set()
    sinks: list[Any] | None = None  # made at the first event, like every other write
    offset = float(checkpoint["wall_time"]) if checkpoint else 0.0
    train_rows = checkpoint["train_rows"] if checkpoint else 0
    eval_rows = checkpoint["eval_rows"] if checkpoint else 0
    start = time.perf_counter()
    prev_steps, prev_wall = None, 0.0
    last_return = float("nan")
    done: dict[str, Any] = {}
    latest: dict[str, Any] | None = None  # newest checkpoint offered by the trainer

    def save(ckpt: dict[str, Any]) -> None:
        meta = {k: v for k, v in ckpt.items() if k != "state"}
        meta.update(train_rows=train_rows, eval_rows=eval_rows,
                    wall_time=offset + time.perf_counter() - start)  # fmt: skip
        run.save_checkpoint(ckpt["state"], meta)

    try:
        for event in events:
            if sinks is None:  # a resume changes files only once the trainer has accepted it
                begin()
                sinks = make_sinks(path, cfg, total, unit, quiet, track)
            if "train" in event:
                rows = [{**r, "wall_time": r["wall_time"] + offset} for r in event["train"]]
                steps, wall = rows[-1]["env_steps"], rows[-1]["wall_time"]
                if prev_steps is not None and wall > prev_wall:
                    sps = (steps - prev_steps) * cfg.num_seeds / (wall - prev_wall)
                    rows = [{**r, "sps": sps} for r in rows]
                prev_steps, prev_wall = steps, wall
                run.append("train.jsonl", rows)
                for sink in sinks:
                    sink.log(rows, TRAIN_NAMES)
                train_rows += len(rows)
                finite = [r["episode_return"] for r in rows if np.isfinite(r["episode_return"])]
                last_return = float(np.mean(finite)) if finite else last_return
            if "eval" in event:
                rows = [{**r, "wall_time": r["wall_time"] + offset} for r in event["eval"]]
                run.append("eval.jsonl", rows)
                eval_rows += len(rows)
                for sink in sinks:
                    sink.log(rows, EVAL_NAMES)
                if trainer == "notebook":
                    say(_notebook_line(rows[0]))
                else:  # about 20 lines and every seed's first solve; eval.jsonl has them all
                    newly = {r["seed"] for r in rows if r["solved"]} - solved_seeds
                    solved_seeds |= newly
                    if newly or (eval_rows // len(rows)) % stride == 0:
                        say(_batched_line(rows, last_return))
            if "checkpoint" in event:
                latest = event["checkpoint"]
                if latest["chunk"] % cfg.checkpoint_every == 0:
                    save(latest)
            if "done" in event:
                done = event["done"]
    except KeyboardInterrupt:
        if latest is not None:
            save(latest)
        run.set_status("interrupted", wall_time=offset + time.perf_counter() - start)
        print(f"interrupted; continue with: reinforce train --resume {path}", file=sys.stderr)
        raise
    finally:
        for sink in sinks or []:
            sink.close()
    if latest is not None:
        save(latest)
    wall = offset + time.perf_counter() - start
    params = done["params"]
    if done.get("stacked"):
        if cfg.num_seeds > 1:
            run.save_params(params, "params_all_seeds.msgpack")
        params = jax.tree.map(lambda x: x[0], params)
    params_path = run.save_params(params)
    threshold = info.solve_threshold
    evals = run.read_jsonl("eval.jsonl")
    plot = plot_curves([(cfg.env_id, run.read_jsonl("train.jsonl"), evals)],
                       path / "curve.png", title=f"REINFORCE on {cfg.env_id} ({cfg.preset})",
                       threshold=threshold, window=20 if trainer == "notebook" else 5)  # fmt: skip
    first_solve = _first_solve(evals, threshold)
    best = max((r["eval_mean"] for r in evals), default=None)
    run.set_status("finished", wall_time=wall, env_steps=done.get("env_steps"),
                   best_eval=best, first_solve=first_solve)  # fmt: skip
    if first_solve:
        say(f"First evaluation at or above {threshold:g}: {first_solve}")
    print(f"run directory: {path}\nlearning curve: {plot}\nparameters: {params_path}\n"
          f"wall time: {wall:.1f}s", file=out, flush=True)  # fmt: skip
    return run


def _first_solve(evals: list[dict[str, Any]], threshold: float | None) -> dict[str, Any] | None:
    if threshold is None:
        return None
    for r in evals:
        if r["eval_mean"] >= threshold:
            keys = ("seed", "episode", "update", "env_steps", "wall_time", "eval_mean")
            return {k: r[k] for k in keys if k in r}
    return None
