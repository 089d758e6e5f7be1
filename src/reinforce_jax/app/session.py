"""A training session: builds a trainer, records its events into run files and console lines.

This layer (with the CLI) alone prints and writes; trainers only yield typed events, and the
session handles every trainer the same way.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

import jax
import numpy as np

from reinforce_jax.app import signals
from reinforce_jax.app.distributed import agreeing, is_lead
from reinforce_jax.app.rundir import RunDir, RunError, default_run_name
from reinforce_jax.app.sinks import EVAL_NAMES, TRAIN_NAMES, make_sinks
from reinforce_jax.config import Config
from reinforce_jax.envs.spec import EnvSpec
from reinforce_jax.errors import ConfigError
from reinforce_jax.stats import best_eval
from reinforce_jax.trainers import build_trainer
from reinforce_jax.trainers.distributed import seed_split
from reinforce_jax.trainers.events import Checkpoint, Done, EvalRows, TrainRows


def _notebook_line(r: dict[str, Any]) -> str:
    return (f"Episode: {r['episode']}\tEpisode Return: {r['episode_return']}\t"
            f"Average Episode Return: {r['average_episode_return']}\t"
            f"Evaluator Episode Return: {r['eval_mean']}")  # fmt: skip


def _batched_line(rows: list[dict[str, Any]], last_return: float, solved_so_far: int,
                  policy: str, seeds: int) -> str:  # fmt: skip
    """One console line per evaluation: the training (sampled) return beside the evaluation.

    ``rows`` are the seeds evaluated now: all ``seeds``, or (a compiled run that stops each seed
    at its solve) those still training."""
    means = np.array([r["eval_mean"] for r in rows])
    passing = sum(r["solved"] for r in rows)
    r = rows[0]
    # NaN until a training episode ends (HalfCheetah's 1,000 steps outlast a first update).
    sampled = f"{last_return:.1f}" if np.isfinite(last_return) else "- (no episode ended yet)"
    head = (f"Update: {r['update']}\tEnv steps: {r['env_steps']}\t"
            f"Training return (sampled): {sampled}\t")  # fmt: skip
    played = sorted({x["eval_episodes"] for x in rows})  # fewer where a pre-check stopped it
    what = f"{policy} evaluation ({' or '.join(map(str, played))} episodes)"
    if seeds == 1:
        return head + (f"{what}: {r['eval_mean']:.1f} ± {r['eval_std']:.1f}\t"
                       f"[{r['wall_time']:.1f}s]")  # fmt: skip
    if len(rows) == seeds:
        return head + (f"{what}, mean over {len(rows)} seeds: {means.mean():.1f} "
                       f"(min {means.min():.1f})\tsolved so far: {solved_so_far}/{seeds}, "
                       f"passing now: {passing}/{len(rows)}\t[{r['wall_time']:.1f}s]")  # fmt: skip
    return head + (f"{what}, mean over the {len(rows)} seeds still training: {means.mean():.1f} "
                   f"(min {means.min():.1f})\tsolved: {solved_so_far}/{seeds}\t"
                   f"[{r['wall_time']:.1f}s]")  # fmt: skip


def describe_settings(cfg: Config, spec: EnvSpec) -> str:
    """The settings that shape learning, in one line (printed when a run starts)."""
    parts = []
    if cfg.trainer != "notebook":
        parts.append(f"{cfg.num_envs} envs x {cfg.rollout_steps} steps per update")
    lr = f"lr {cfg.learning_rate:g}"
    if cfg.lr_schedule == "linear":
        horizon = cfg.lr_decay_steps or cfg.total_steps
        lr += f" decaying linearly over {horizon:,} steps"
    parts += [lr, f"baseline {cfg.baseline}"]
    if cfg.return_lambda < 1.0:
        parts.append(f"TD(lambda = {cfg.return_lambda:g}) returns")
    if cfg.baseline == "value" and not cfg.truncation_bootstrap:
        parts.append("no bootstrap at the time limit")
    if cfg.normalize_advantages:
        parts.append("normalised advantages")
    if cfg.entropy_coef:
        ent = f"entropy {cfg.entropy_coef:g}"
        if cfg.entropy_decay_steps:
            ent += f" decaying linearly over {cfg.entropy_decay_steps:,} steps"
        parts.append(ent)
    if cfg.obs_norm:
        parts.append("normalised observations")
    parts.append(f"network {'x'.join(map(str, cfg.hidden_sizes))} {cfg.activation}")
    threshold = spec.solve_threshold
    check = (f"mean of {cfg.eval_episodes} {'greedy' if cfg.eval_greedy else 'sampled'} "
             f"evaluation episodes >= {threshold:g}" if threshold is not None
             else "none (gymnasium registers no threshold)")  # fmt: skip
    return f"settings: {', '.join(parts)}; solve check: {check}"


def _or_nan(x: float | None) -> float:
    return float("nan") if x is None else x


def summarize_run(
    evals: list[dict[str, Any]], threshold: float | None, seeds: list[int]
) -> tuple[str, dict[str, Any]]:
    """The closing verdict: solved or not, per seed and in aggregate, against the threshold."""
    from reinforce_jax.stats import aggregate, format_aggregate

    by_seed = {s: [r for r in evals if r.get("seed", seeds[0]) == s] for s in seeds}
    best = {s: _or_nan(best_eval(rows)) for s, rows in by_seed.items()}
    final = {s: rows[-1]["eval_mean"] if rows else float("nan") for s, rows in by_seed.items()}
    first = {s: next((r for r in rows if r["solved"]), None) for s, rows in by_seed.items()}
    solved = [s for s in seeds if first[s] is not None]
    info: dict[str, Any] = {"solved_seeds": len(solved), "num_seeds": len(seeds),
                            "best_eval_per_seed": best, "final_eval_per_seed": final,
                            "first_solve_per_seed": {s: _first_solve(first[s]) for s in solved}}  # fmt: skip
    against = "no solve threshold" if threshold is None else f"threshold {threshold:g}"
    if len(seeds) == 1:
        s = seeds[0]
        if first[s] is not None:
            r = first[s]
            at = f"update {r['update']}" if "episode" not in r else f"episode {r['episode']}"
            line = (f"Solved: evaluation {r['eval_mean']:.1f} >= {against} at {at} "
                    f"({r['env_steps']:,} env steps, {r['wall_time']:.1f} s); "
                    f"best evaluation {best[s]:.1f}")  # fmt: skip
        else:
            line = f"Not solved: best evaluation {best[s]:.1f} against {against}"
        greedy = next((r for r in by_seed[s] if r.get("greedy_solved")), None)
        if any("greedy_mean" in r for r in by_seed[s]):  # the notebook trainer reports both
            line += ("\n  (solve check above: the notebook's own evaluation; greedy 100-episode "
                     "check: " + (f"first met at episode {greedy['episode']}, "
                                  f"{greedy['env_steps']:,} env steps, {greedy['wall_time']:.1f} s)"
                                  if greedy else "never met)"))  # fmt: skip
            info["first_greedy_solve"] = _first_solve(greedy)
        return line, info
    values = [v for v in final.values() if np.isfinite(v)]
    if values:
        info["final_aggregate"] = aggregate(values)
    verdict = "Solved" if len(solved) == len(seeds) else "Not solved"
    line = f"{verdict}: {len(solved)}/{len(seeds)} seeds reached {against}"
    if values:
        line += f"; final evaluation over seeds: {format_aggregate(info['final_aggregate'])}"
    return line, info


class Stopped(KeyboardInterrupt):
    """Training stopped on a signal (SIGINT, SIGTERM, SIGHUP) after checkpointing."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class Diverged(RuntimeError):
    """A non-finite loss or parameter: training stopped, the last finite checkpoint kept."""


# What recording needs after training has started: TensorBoard's writer (at the first event) and
# matplotlib for curve.png (at the end), about 0.7 s of imports on 2 cores.
PRELOAD = ("tensorboardX", "matplotlib.figure", "matplotlib.backends.backend_agg")


def preload_in_background(
    modules: tuple[str, ...] = PRELOAD, after: threading.Event | None = None, wait: float = 10.0
) -> threading.Thread:
    """Import ``modules`` in a thread, while JAX compiles and trains without holding the GIL; the
    later imports then find them loaded (or wait for them). ``after``: start only once it is set
    (at most ``wait`` seconds later), so that the imports, which hold the GIL, do not slow the
    tracing of a trainer's program (a 64-seed CartPole start's by about 0.4 s). Failures are left
    to those imports to report. Not a daemon: the interpreter never shuts down in the middle of an
    import."""

    def load() -> None:
        if after is not None:
            after.wait(wait)
        for name in modules:
            with contextlib.suppress(Exception):
                importlib.import_module(name)

    thread = threading.Thread(target=load, name="reinforce-jax-preload")
    thread.start()
    return thread


def _finite(tree: Any) -> bool:
    return all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(tree))


def run_training(
    cfg: Config,
    spec: EnvSpec,
    run_dir: str | Path | None,
    quiet: bool = False,
    out: TextIO | None = None,
    resume: bool = False,
    track: bool = False,
    extend: bool = False,
) -> RunDir:
    """Train ``cfg`` into a new run directory (or continue ``run_dir`` with ``resume``).

    Every setting the trainer cannot run, and every unusable checkpoint, is refused
    (:class:`ConfigError`) before any file is written or changed. The run directory is locked
    while it trains. A signal stops training at the next event with a checkpoint
    (:class:`Stopped`); a non-finite loss or parameter stops it keeping the last finite
    checkpoint (:class:`Diverged`).
    """
    out = out or sys.stdout
    if signals.requested() is not None:  # stopped while starting up: nothing written yet
        name = signal.Signals(signals.requested()).name
        print(f"stopped by {name} before training started; nothing was written", file=sys.stderr)
        raise Stopped(signals.requested())
    if track and importlib.util.find_spec("wandb") is None:
        raise ConfigError("tracking needs Weights & Biases: pip install wandb")
    say = (lambda *a: None) if quiet else (lambda line: print(line, file=out, flush=True))
    trainer = build_trainer(cfg, spec)
    preload_in_background(after=getattr(trainer, "tracing_done", None))
    cfg = cfg.replace(trainer=trainer.name)
    resume_from: Checkpoint | None = None
    counts: dict[str, Any] = {"train_rows": 0, "eval_rows": 0, "wall_time": 0.0}
    # With several processes (jax.distributed) process 0 alone writes; the others only read a
    # checkpoint to resume from and take part in the trainer's gathers.
    lead = is_lead()
    with agreeing():
        if resume:
            run = RunDir.open(run_dir)
            if lead:
                run.lock()
            status = (
                run.read_json("status.json").get("status")
                if (run.path / "status.json").exists()
                else None
            )
            if status == "finished" and not extend:
                run.unlock()
                raise RunError(
                    f"run {run.path} has already finished; nothing to resume "
                    "(give --total-steps to extend it)"
                )
            try:
                saved = run.load_checkpoint()
                if saved is not None:
                    counts = _checked_counts(run, saved)
                    resume_from = Checkpoint(saved["evaluations"], saved["state"],
                                             saved["trainer"])  # fmt: skip
                    if not isinstance(resume_from.meta, dict):
                        raise RunError(f"checkpoint {run.path / 'checkpoint.msgpack'} is corrupt")
                    trainer.check_resume(resume_from)
            except BaseException:
                run.unlock()
                raise
            path = run.path
            events = trainer.run(resume_from)

            def begin() -> None:  # once the trainer has accepted the checkpoint
                run.remove_stale_temp_files()
                run.truncate_jsonl("train.jsonl", counts["train_rows"])
                run.truncate_jsonl("eval.jsonl", counts["eval_rows"])
                if extend:  # the run's saved settings now hold the larger budget
                    saved = run.read_json("config.json")
                    run.write_json("config.json", {**saved, "config": cfg.to_dict()})
                run.set_status("running")
        else:
            events = trainer.run()
            path = Path(run_dir) if run_dir else Path("runs") / default_run_name(cfg)
            if lead:
                run = RunDir.create(path, cfg, spec.facts(),
                                    {"unit": trainer.unit, "curve_window": trainer.curve_window})  # fmt: skip
            else:
                run = RunDir(path)

            def begin() -> None:
                pass

    if not lead:
        try:
            with signals.stop_requests():
                _follow(events, cfg, path, say)
        finally:
            run.unlock()
        return run
    try:
        with signals.stop_requests():
            return _record(run, trainer, events, begin, cfg, spec, counts, say, out, quiet,
                           track, resume)  # fmt: skip
    finally:
        run.unlock()


def _follow(events: Any, cfg: Config, path: Path, say: Any) -> None:
    """A process other than 0: train this process's seeds, write nothing (process 0 records)."""
    split = seed_split(cfg.num_seeds)
    say(f"process {jax.process_index()} of {split.processes}: training seeds "
        f"{cfg.seed + split.start}..{cfg.seed + split.stop - 1}; process 0 records every seed "
        f"in {path}")  # fmt: skip
    for _ in events:
        if signals.requested() is not None:
            raise Stopped(signals.requested())


def _checked_counts(run: RunDir, saved: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's row counts and position, checked against the run's files."""
    for name in ("evaluations", "train_rows", "eval_rows"):
        v = saved.get(name)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise RunError(f"checkpoint {run.path / 'checkpoint.msgpack'} is corrupt: "
                           f"{name} = {v!r}")  # fmt: skip
    wall = saved.get("wall_time")
    if not isinstance(wall, (int, float)) or not np.isfinite(wall) or wall < 0:
        raise RunError(f"checkpoint {run.path / 'checkpoint.msgpack'} is corrupt: wall_time")
    kept: dict[str, list[dict[str, Any]]] = {}
    for name, key in (("train.jsonl", "train_rows"), ("eval.jsonl", "eval_rows")):
        rows = run.read_jsonl(name)  # a garbage line raises RunError here, before training
        if len(rows) < saved[key]:
            raise RunError(f"{run.path / name} holds {len(rows)} rows but the checkpoint accounts "
                           f"for {saved[key]}: the run directory is damaged")  # fmt: skip
        kept[key] = rows[: saved[key]]
    # TensorBoard drops what a killed process logged after the checkpoint (steps >= purge_step).
    steps = [int(r.get("env_steps", 0)) for r in kept["train_rows"]]
    return {"train_rows": saved["train_rows"], "eval_rows": saved["eval_rows"], "wall_time": wall,
            "purge_step": max(steps) + 1 if steps else None}  # fmt: skip


def _record(run, trainer, events, begin, cfg, spec, counts, say, out, quiet, track,
            resume) -> RunDir:  # fmt: skip
    """Turn the trainer's events into files and console lines (see :func:`run_training`)."""
    path = run.path
    verb = "Resuming" if resume else "Training"
    say(f"{verb} {cfg.env_id} with the {trainer.name} trainer (preset {cfg.preset}, seed {cfg.seed}"
        + (f", {cfg.num_seeds} seeds" if cfg.num_seeds > 1 else "")
        + (f", {jax.process_count()} processes" if jax.process_count() > 1 else "")
        + f") -> {path}")  # fmt: skip
    say(describe_settings(cfg, spec))
    budget = getattr(trainer, "env_steps_budget", None)
    if budget is not None and budget != cfg.total_steps:
        say(f"note: total_steps {cfg.total_steps:,} runs as {budget:,} steps per seed "
            f"({trainer.budget_rule})")  # fmt: skip
    if getattr(trainer, "startup_note", None):
        say(trainer.startup_note)
    total, unit = trainer.total, trainer.unit
    stride = max(1, total // cfg.eval_every // 20)  # console lines for batched trainers
    sinks: list[Any] | None = None  # made at the first event, like every other write
    offset = float(counts["wall_time"])
    train_rows, eval_rows = int(counts["train_rows"]), int(counts["eval_rows"])
    # Seeds that have met the solve check, kept across a resume (stopped seeds log no more rows).
    solved_seeds: set[int] = (
        {r["seed"] for r in run.read_jsonl("eval.jsonl")[:eval_rows] if r["solved"]}
        if eval_rows else set()
    )  # fmt: skip
    purge_step = counts.get("purge_step")
    start = time.perf_counter()
    prev_steps, prev_wall = None, 0.0
    last_return = float("nan")
    done: Done | None = None
    latest: tuple[Checkpoint, dict[str, Any]] | None = None  # newest checkpoint and its counts
    latest_params: Any = None  # the parameters of the newest evaluation (leading seed axis)
    ended_early = False  # an episode ended before the time limit (goal reached, or failure)
    returns_seen = (np.inf, -np.inf)  # the least and greatest training return (window means)
    limit = spec.max_episode_steps

    def save(ckpt: Checkpoint, at: dict[str, Any]) -> None:
        meta = {"evaluations": ckpt.evaluations, "trainer": ckpt.meta, **at}
        run.save_checkpoint(ckpt.state, meta)

    def keep_what_is_good() -> None:
        """Leave the run usable: the newest good checkpoint, its parameters and the curve."""
        if latest is not None:
            save(*latest)
        if latest_params is not None:  # evaluate, video and plot then work
            _save_params(run, latest_params, cfg.num_seeds)
            _plot(run, cfg, spec, trainer.curve_window)

    try:
        for event in events:
            if sinks is None:  # a resume changes files only once the trainer has accepted it
                begin()
                sinks = make_sinks(path, cfg, total, unit, quiet, track, purge_step)
            if isinstance(event, TrainRows):
                rows = [{**r, "wall_time": r["wall_time"] + offset} for r in event.rows]
                bad = next((r for r in rows if not np.isfinite(r.get("loss", 0.0))), None)
                if bad is not None:
                    at = f"update {bad.get('update')}" if "update" in bad else "an update"
                    raise Diverged(f"training diverged at {at} of seed {bad.get('seed')} "
                                   f"(loss {bad['loss']})")  # fmt: skip
                steps, wall = rows[-1]["env_steps"], rows[-1]["wall_time"]
                if prev_steps is not None and wall > prev_wall:  # over the seeds still training
                    seeds = len({r.get("seed") for r in rows})
                    sps = (steps - prev_steps) * seeds / (wall - prev_wall)
                    rows = [{**r, "sps": sps} for r in rows]
                prev_steps, prev_wall = steps, wall
                run.append("train.jsonl", rows)
                for sink in sinks:
                    sink.log(rows, TRAIN_NAMES)
                train_rows += len(rows)
                finite = [r["episode_return"] for r in rows if np.isfinite(r["episode_return"])]
                last_return = float(np.mean(finite)) if finite else last_return
                if finite:
                    returns_seen = (min(returns_seen[0], *finite), max(returns_seen[1], *finite))
                ended_early = ended_early or any(
                    limit is None or r.get("episode_length", limit) < limit for r in rows
                )
            elif isinstance(event, EvalRows):
                if not _finite(event.params):
                    raise Diverged(f"training diverged: non-finite parameters at update "
                                   f"{event.rows[0].get('update')}")  # fmt: skip
                rows = [{**r, "wall_time": r["wall_time"] + offset} for r in event.rows]
                latest_params = event.params
                run.append("eval.jsonl", rows)
                eval_rows += len(rows)
                for sink in sinks:
                    sink.log(rows, EVAL_NAMES)
                if trainer.log_style == "notebook":
                    say(_notebook_line(rows[0]))
                else:  # about 20 lines and every seed's first solve; eval.jsonl has them all
                    newly = {r["seed"] for r in rows if r["solved"]} - solved_seeds
                    solved_seeds |= newly
                    first = rows[0]  # its update counts evaluations, however many seeds train
                    evaluations = (first["update"] // cfg.eval_every if "update" in first
                                   else eval_rows // len(rows))  # fmt: skip
                    if newly or evaluations % stride == 0:
                        policy = "Greedy" if cfg.eval_greedy else "Sampled"
                        say(_batched_line(rows, last_return, len(solved_seeds), policy,
                                          cfg.num_seeds))  # fmt: skip
            elif isinstance(event, Checkpoint):
                # The rows logged so far are exactly those this checkpoint accounts for.
                at = {"train_rows": train_rows, "eval_rows": eval_rows,
                      "wall_time": offset + time.perf_counter() - start}  # fmt: skip
                latest = (event, at)
                if event.evaluations % cfg.checkpoint_every == 0:
                    save(event, at)
            elif isinstance(event, Done):
                done = event
            if signals.requested() is not None:
                raise Stopped(signals.requested())
    except KeyboardInterrupt as e:
        keep_what_is_good()
        name = signal.Signals(getattr(e, "signum", signal.SIGINT)).name
        run.set_status("interrupted", signal=name,
                       wall_time=offset + time.perf_counter() - start)  # fmt: skip
        print(f"stopped by {name} with a checkpoint; continue with: reinforce train --resume "
              f"{path}", file=sys.stderr, flush=True)  # fmt: skip
        raise
    except Diverged as e:
        keep_what_is_good()
        run.set_status("diverged", error=str(e), wall_time=offset + time.perf_counter() - start)
        raise Diverged(f"{e}; the last finite checkpoint and its parameters are kept "
                       "(try a smaller learning_rate or max_grad_norm)") from None  # fmt: skip
    except Exception as e:  # disk full, a deleted directory, out of memory: say so in the status
        if sinks is not None or not resume:  # a resume refused at its first event changed nothing
            with contextlib.suppress(Exception):
                run.set_status("failed", error=f"{type(e).__name__}: {e}".splitlines()[0])
        raise
    finally:
        for sink in sinks or []:
            sink.close()
    if latest is not None:
        save(*latest)
    wall = offset + time.perf_counter() - start
    assert done is not None, "a trainer always ends with Done"
    params_path = _save_params(run, done.params, cfg.num_seeds)
    threshold = spec.solve_threshold
    evals = run.read_jsonl("eval.jsonl")
    plot = _plot(run, cfg, spec, trainer.curve_window)
    seeds = list(range(cfg.seed, cfg.seed + cfg.num_seeds))
    verdict, info = summarize_run(evals, threshold, seeds)
    best = best_eval(evals)
    first_solve = next((_first_solve(r) for r in evals if r["solved"]), None)
    run.set_status("finished", wall_time=wall, env_steps=done.env_steps, best_eval=best,
                   first_solve=first_solve, **info)  # fmt: skip
    if done.stop_reason:
        say(f"stopped: {done.stop_reason}")
    hint = sparse_reward_hint(limit, ended_early, info["solved_seeds"] > 0, returns_seen)
    if hint:
        say(hint)
    print(verdict, file=out, flush=True)
    print(f"run directory: {path} ({wall:.1f} s)\nlearning curve: {plot}\n"
          f"parameters: {params_path}\nnext: reinforce evaluate {path} · reinforce video {path} "
          f"· reinforce plot {path}", file=out, flush=True)  # fmt: skip
    return run


def sparse_reward_hint(limit: int | None, ended_early: bool, solved: bool,
                       returns_seen: tuple[float, float]) -> str | None:  # fmt: skip
    """The hint for a run that never reached its goal: no episode ended before the time limit,
    no seed solved, and every training return was the same (MountainCar's -200: a reward of -1
    a step until a goal never reached). Not where returns differ: an unsolved Pendulum-v1 (whose
    episodes always run to the limit) had something to learn from."""
    low, high = returns_seen
    if ended_early or solved or limit is None or not low <= high:
        return None
    if high - low > 1e-3 * max(1.0, abs(low), abs(high)):
        return None
    return (f"hint: no episode ever ended before the {limit}-step time limit (no goal reached), "
            f"so every return was the same ({low:g}) and there was nothing to learn from; "
            "sparse-reward tasks like this need exploration REINFORCE alone does not provide")  # fmt: skip


def _save_params(run: RunDir, params: Any, num_seeds: int) -> Path:
    """``params.msgpack`` (the first seed) and, for several seeds, ``params_all_seeds.msgpack``."""
    if num_seeds > 1:
        run.save_params(params, "params_all_seeds.msgpack")
    return run.save_params(jax.tree.map(lambda x: x[0], params))


def _plot(run: RunDir, cfg: Config, spec: EnvSpec, window: int) -> Path:
    from reinforce_jax.app.plots import plot_curves

    return plot_curves([(cfg.env_id, run.read_jsonl("train.jsonl"), run.read_jsonl("eval.jsonl"))],
                       run.path / "curve.png", title=f"REINFORCE on {cfg.env_id} ({cfg.preset})",
                       threshold=spec.solve_threshold, window=window)  # fmt: skip


def _first_solve(r: dict[str, Any] | None) -> dict[str, Any] | None:
    if r is None:
        return None
    keys = ("seed", "episode", "update", "env_steps", "wall_time", "eval_mean")
    return {k: r[k] for k in keys if k in r}
