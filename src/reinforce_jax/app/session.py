"""A training session: builds a trainer, records its events into run files and console lines.

This layer (with the CLI) alone prints and writes; trainers only yield typed events, and the
session handles every trainer the same way.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import jax
import numpy as np

from reinforce_jax.app.rundir import RunDir, RunError, default_run_name
from reinforce_jax.app.sinks import EVAL_NAMES, TRAIN_NAMES, make_sinks
from reinforce_jax.config import Config
from reinforce_jax.envs.spec import EnvSpec
from reinforce_jax.errors import ConfigError
from reinforce_jax.trainers import build_trainer
from reinforce_jax.trainers.events import Checkpoint, Done, EvalRows, TrainRows


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
    spec: EnvSpec,
    run_dir: str | Path | None,
    quiet: bool = False,
    out: TextIO | None = None,
    resume: bool = False,
    track: bool = False,
) -> RunDir:
    """Train ``cfg`` into a new run directory (or continue ``run_dir`` with ``resume``).

    Every setting the trainer cannot run is refused (:class:`ConfigError`) before any file is
    written or changed.
    """
    out = out or sys.stdout
    if track and importlib.util.find_spec("wandb") is None:
        raise ConfigError("tracking needs Weights & Biases: pip install wandb")
    say = (lambda *a: None) if quiet else (lambda line: print(line, file=out, flush=True))
    trainer = build_trainer(cfg, spec)
    cfg = cfg.replace(trainer=trainer.name)
    resume_from: Checkpoint | None = None
    counts = {"train_rows": 0, "eval_rows": 0, "wall_time": 0.0}
    if resume:
        run = RunDir.open(run_dir)
        status = (
            run.read_json("status.json").get("status")
            if (run.path / "status.json").exists()
            else None
        )
        if status == "finished":
            raise RunError(f"run {run.path} has already finished; nothing to resume")
        saved = run.load_checkpoint()
        if saved is not None:
            counts = {k: saved[k] for k in counts}
            resume_from = Checkpoint(int(saved["evaluations"]), saved["state"], saved["trainer"])
        path = run.path
        events = trainer.run(resume_from)

        def begin() -> None:  # once the trainer has accepted the checkpoint
            run.truncate_jsonl("train.jsonl", counts["train_rows"])
            run.truncate_jsonl("eval.jsonl", counts["eval_rows"])
            run.set_status("running")
    else:
        events = trainer.run()
        path = Path(run_dir) if run_dir else Path("runs") / default_run_name(cfg)
        run = RunDir.create(path, cfg, spec.facts())

        def begin() -> None:
            pass

    verb = "Resuming" if resume else "Training"
    say(f"{verb} {cfg.env_id} with the {trainer.name} trainer (preset {cfg.preset}, seed {cfg.seed}"
        + (f", {cfg.num_seeds} seeds" if cfg.num_seeds > 1 else "") + f") -> {path}")  # fmt: skip
    total, unit = trainer.total, trainer.unit
    stride = max(1, total // cfg.eval_every // 20)  # console lines for batched trainers
    solved_seeds: set[int] = set()
    sinks: list[Any] | None = None  # made at the first event, like every other write
    offset = float(counts["wall_time"])
    train_rows, eval_rows = int(counts["train_rows"]), int(counts["eval_rows"])
    start = time.perf_counter()
    prev_steps, prev_wall = None, 0.0
    last_return = float("nan")
    done: Done | None = None
    latest: tuple[Checkpoint, dict[str, Any]] | None = None  # newest checkpoint and its counts

    def save(ckpt: Checkpoint, at: dict[str, Any]) -> None:
        meta = {"evaluations": ckpt.evaluations, "trainer": ckpt.meta, **at}
        run.save_checkpoint(ckpt.state, meta)

    try:
        for event in events:
            if sinks is None:  # a resume changes files only once the trainer has accepted it
                begin()
                sinks = make_sinks(path, cfg, total, unit, quiet, track)
            if isinstance(event, TrainRows):
                rows = [{**r, "wall_time": r["wall_time"] + offset} for r in event.rows]
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
            elif isinstance(event, EvalRows):
                rows = [{**r, "wall_time": r["wall_time"] + offset} for r in event.rows]
                run.append("eval.jsonl", rows)
                eval_rows += len(rows)
                for sink in sinks:
                    sink.log(rows, EVAL_NAMES)
                if trainer.log_style == "notebook":
                    say(_notebook_line(rows[0]))
                else:  # about 20 lines and every seed's first solve; eval.jsonl has them all
                    newly = {r["seed"] for r in rows if r["solved"]} - solved_seeds
                    solved_seeds |= newly
                    if newly or (eval_rows // len(rows)) % stride == 0:
                        say(_batched_line(rows, last_return))
            elif isinstance(event, Checkpoint):
                # The rows logged so far are exactly those this checkpoint accounts for.
                at = {"train_rows": train_rows, "eval_rows": eval_rows,
                      "wall_time": offset + time.perf_counter() - start}  # fmt: skip
                latest = (event, at)
                if event.evaluations % cfg.checkpoint_every == 0:
                    save(event, at)
            elif isinstance(event, Done):
                done = event
    except KeyboardInterrupt:
        if latest is not None:
            save(*latest)
        run.set_status("interrupted", wall_time=offset + time.perf_counter() - start)
        print(f"interrupted; continue with: reinforce train --resume {path}", file=sys.stderr)
        raise
    finally:
        for sink in sinks or []:
            sink.close()
    if latest is not None:
        save(*latest)
    wall = offset + time.perf_counter() - start
    assert done is not None, "a trainer always ends with Done"
    if cfg.num_seeds > 1:
        run.save_params(done.params, "params_all_seeds.msgpack")
    params_path = run.save_params(jax.tree.map(lambda x: x[0], done.params))
    threshold = spec.solve_threshold
    evals = run.read_jsonl("eval.jsonl")
    from reinforce_jax.app.plots import plot_curves

    plot = plot_curves([(cfg.env_id, run.read_jsonl("train.jsonl"), evals)],
                       path / "curve.png", title=f"REINFORCE on {cfg.env_id} ({cfg.preset})",
                       threshold=threshold, window=trainer.curve_window)  # fmt: skip
    first_solve = _first_solve(evals, threshold)
    best = max((r["eval_mean"] for r in evals), default=None)
    run.set_status("finished", wall_time=wall, env_steps=done.env_steps,
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
