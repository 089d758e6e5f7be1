"""``reinforce sweep``: train a grid of configurations x seeds and report them with honest statistics.

The sweep directory holds ``sweep.json`` (the grid, every configuration, the seeds, the status),
``eval.jsonl`` (every evaluation row, labelled ``config`` and ``seed``), ``summary.json`` and
``summary.csv`` (per configuration: final and best evaluation as IQM and mean with 95% bootstrap
intervals over seeds, the fraction of seeds solved, median steps and seconds to solve),
``curves.png`` (evaluation IQM per configuration with its 95% band) and ``intervals.png``.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from reinforce_jax.app import signals
from reinforce_jax.app.rundir import RunError, _jsonable, atomic_write
from reinforce_jax.config import ConfigError
from reinforce_jax.stats import aggregate, best_eval, bootstrap_ci, iqm

SUMMARY_REPS = 2000  # bootstrap resamples of the summary's intervals
CURVE_REPS = 500  # per point of the learning curves: a band, not a headline figure


def parse_grid(items: list[str], parse_value: Any) -> dict[str, list[Any]]:
    """``["learning_rate=0.003,0.01", "hidden_sizes=[32,32],[64,64]"]`` -> ``{name: values}``.

    ``parse_value(key, text)`` converts one value (the CLI's ``--set`` parser).
    """
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or not text.strip():
            raise ConfigError(f"--grid expects KEY=V1,V2,..., got {item!r}")
        if key in grid:
            raise ConfigError(f"--grid {key} is given twice; list all its values in one --grid")
        values = []
        for part in _split_values(text):
            try:
                values.append(parse_value(key, part))
            except (ValueError, KeyError):
                raise ConfigError(f"--grid {key}: cannot read {part!r}") from None
        grid[key] = values
    if not grid:
        raise ConfigError("reinforce sweep needs at least one --grid KEY=V1,V2,...")
    return grid


def _split_values(text: str) -> list[str]:
    """Split on commas outside brackets, so ``[32,32],[64,64]`` is two values."""
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def default_sweep_dir(env_id: str) -> Path:
    return Path("sweeps") / f"{env_id}-sweep-{time.strftime('%Y%m%d-%H%M%S')}"


def run_sweep(
    env_id: str,
    preset: str,
    overrides: dict[str, Any],
    grid: dict[str, list[Any]],
    sweep_dir: str | Path | None = None,
    *,
    quiet: bool = False,
    out: Any = None,
) -> dict[str, Any]:
    """Plan, validate, train and summarise a sweep; returns the summary (as ``summary.json``).

    Every configuration and the directory are checked before anything is written.
    """
    from reinforce_jax.app.distributed import agreeing, is_lead
    from reinforce_jax.envs.registry import env_spec
    from reinforce_jax.trainers.events import EvalRows
    from reinforce_jax.trainers.sweep import build_sweep, plan_sweep

    out = out or sys.stdout
    plan = plan_sweep(env_id, preset, overrides, grid)
    spec = env_spec(env_id, plan.configs[0].env_args)
    trainers = build_sweep(plan, spec)
    path = Path(sweep_dir) if sweep_dir is not None else default_sweep_dir(env_id)
    # With several processes (jax.distributed) every one trains its share of each program's
    # runs and sees all rows; process 0 alone writes and prints.
    lead = is_lead()
    with agreeing():
        if lead:
            _create(path)
    rows = len(plan.configs) * len(plan.seeds)
    meta = {
        "env_id": env_id,
        "preset": preset,
        "grid": grid,
        "seeds": plan.seeds,
        "configs": [
            {"config": i, "settings": s, "full": c.to_dict()}
            for i, (s, c) in enumerate(zip(plan.settings, plan.configs, strict=True))
        ],  # fmt: skip
        "programs": [{"configs": g.config_ids, "traced": list(g.traced)} for g in plan.groups],
        "threshold": spec.solve_threshold,
        "status": "running",
    }
    if not lead:
        print(f"process of a sweep: training a share of its runs; process 0 writes {path}",
              file=out, flush=True)  # fmt: skip
        return _follow(trainers)
    atomic_write(path / "sweep.json", json.dumps(_jsonable(meta), indent=2))
    say = (lambda *a: None) if quiet else (lambda msg: print(msg, file=out, flush=True))  # noqa: E731
    say(f"sweep of {len(plan.configs)} configurations x {len(plan.seeds)} seeds on {env_id} "
        f"({rows} runs) in {len(plan.groups)} compiled program(s)"
        f"{' on envpool' if plan.trainer == 'envpool' else ''}; traced: "
        f"{', '.join(plan.groups[0].traced) or 'nothing'} -> {path}")  # fmt: skip
    evals: list[dict[str, Any]] = []
    solved_runs: set[tuple[int, int]] = (
        set()
    )  # (config, seed) that have solved, for the progress line
    start = time.perf_counter()
    status, stopped_by = "finished", None
    with signals.stop_requests():
        for g, (group, trainer) in enumerate(zip(plan.groups, trainers, strict=True)):
            begin = time.perf_counter() - start  # seconds to solve count from the sweep's start
            for event in trainer.run():
                stopped_by = signals.requested()
                if stopped_by:  # checked between events: never inside XLA
                    status = "interrupted"
                    break
                if isinstance(event, EvalRows):
                    batch = [{**r, "wall_time": r["wall_time"] + begin} for r in event.rows]
                    evals.extend(batch)
                    _append(path / "eval.jsonl", batch)
                    solved_runs.update((r["config"], r["seed"]) for r in batch if r["solved"])
                    solved = sum(c in group.config_ids for c, _ in solved_runs)
                    say(f"  program {g + 1}/{len(plan.groups)}: "
                        f"{batch[0]['env_steps']:>10,} steps/seed  "
                        f"eval mean {np.mean([r['eval_mean'] for r in batch]):8.1f}  solved "
                        f"{solved}/{len(group.config_ids) * len(plan.seeds)}  "
                        f"{time.perf_counter() - start:6.1f}s")  # fmt: skip
            if status == "interrupted":
                break
    summary = summarize(plan.settings, plan.seeds, evals, spec.solve_threshold)
    summary["wall_time"] = time.perf_counter() - start
    summary["status"] = status
    write_summary(path, summary)
    write_figures(path, summary, evals, env_id, spec.solve_threshold)
    meta["status"] = status
    atomic_write(path / "sweep.json", json.dumps(_jsonable(meta), indent=2))
    print(format_table(summary), file=out, flush=True)
    print(f"{path}: summary.json, summary.csv, curves.png, intervals.png "
          f"({summary['wall_time']:.1f}s)", file=out, flush=True)  # fmt: skip
    if status == "interrupted":
        stop = SweepStopped(f"sweep stopped by signal {stopped_by}; the evaluations so far are "
                            f"summarised in {path}")  # fmt: skip
        stop.signum = stopped_by or 2
        raise stop
    return summary


class SweepStopped(KeyboardInterrupt):
    """A stop signal ended the sweep early; ``signum`` says which."""

    signum: int = 2


def _create(path: Path) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise RunError(f"sweep directory {path} already exists and is not empty; "
                       "nothing was overwritten")  # fmt: skip
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunError(f"cannot create sweep directory {path}: {e.strerror}") from None


def _follow(trainers: list[Any]) -> dict[str, Any]:
    """A non-lead process: train its share in step with the others, write nothing."""
    for trainer in trainers:
        for _ in trainer.run():
            pass
    return {}


def _append(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "a") as f:
        f.write("".join(json.dumps(_jsonable(r), allow_nan=False) + "\n" for r in rows))


# --- statistics --------------------------------------------------------------------------------


def _agg(values: list[float]) -> dict[str, Any]:
    """:func:`~reinforce_jax.stats.aggregate` plus the mean's percentile-bootstrap interval."""
    agg = aggregate(values, reps=SUMMARY_REPS)
    if len(values) > 1:
        lo, hi = bootstrap_ci(values, np.mean, reps=SUMMARY_REPS)
    else:
        lo = hi = float(values[0])
    agg["mean_boot_ci95"] = [lo, hi]
    return agg


def summarize(
    settings: list[dict[str, Any]],
    seeds: list[int],
    evals: list[dict[str, Any]],
    threshold: float | None,
) -> dict[str, Any]:
    """Per configuration, over its seeds: final and best evaluation (IQM and mean with 95%
    intervals), the fraction solved, median steps and seconds to the first solving evaluation.

    Configurations are ranked by final IQM (then fraction solved), best first.
    """
    runs: dict[tuple[int, int], list[dict[str, Any]]] = {}  # (config, seed) -> rows, in order
    for r in evals:
        runs.setdefault((r["config"], r["seed"]), []).append(r)
    configs = []
    for c, values in enumerate(settings):
        final, best, steps, seconds, solved = [], [], [], [], 0
        for s in seeds:
            rows = runs.get((c, s), [])
            if not rows:
                continue
            final.append(rows[-1]["eval_mean"])
            whole = best_eval(rows)
            best.append(rows[-1]["eval_mean"] if whole is None else whole)
            first = next((r for r in rows if r["solved"]), None)
            if first is not None:
                solved += 1
                steps.append(first["env_steps"])
                seconds.append(first["wall_time"])
        entry: dict[str, Any] = {"config": c, "settings": values, "seeds": len(final)}
        if final:
            entry.update(
                final=_agg(final),
                best=_agg(best),
                solved_fraction=solved / len(final),
                median_steps_to_solve=float(np.median(steps)) if steps else None,
                median_seconds_to_solve=float(np.median(seconds)) if seconds else None,
            )
        configs.append(entry)
    ranked = sorted(
        configs,
        key=lambda e: (-e["final"]["iqm"], -e["solved_fraction"]) if "final" in e else (1e300, 0),
    )
    for rank, e in enumerate(ranked, 1):
        e["rank"] = rank
    return {"threshold": threshold, "seeds": seeds, "configs": ranked}


def format_table(summary: dict[str, Any]) -> str:
    """The terminal table, best first."""
    entries = summary["configs"]
    keys = list(entries[0]["settings"]) if entries else []
    header = ["#", "cfg", *keys, "final IQM [95% CI]", "final mean [95% CI]", "best IQM",
              "solved", "steps to solve", "s to solve"]  # fmt: skip
    lines = []
    for e in entries:
        cells = [str(e["rank"]), str(e["config"]), *(_fmt_value(e["settings"][k]) for k in keys)]
        if "final" not in e:
            lines.append(cells + ["-"] * 6)
            continue
        f, b = e["final"], e["best"]
        cells += [
            f"{f['iqm']:.1f} [{f['iqm_ci95'][0]:.1f}, {f['iqm_ci95'][1]:.1f}]",
            f"{f['mean']:.1f} [{f['mean_boot_ci95'][0]:.1f}, {f['mean_boot_ci95'][1]:.1f}]",
            f"{b['iqm']:.1f}",
            f"{round(e['solved_fraction'] * e['seeds'])}/{e['seeds']}",
            "-" if e["median_steps_to_solve"] is None else f"{e['median_steps_to_solve']:,.0f}",
            "-" if e["median_seconds_to_solve"] is None else f"{e['median_seconds_to_solve']:.1f}",
        ]
        lines.append(cells)
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
    text = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *lines]]
    note = ("over seeds: IQM and mean with 95% percentile-bootstrap intervals; steps and seconds: "
            "median over the seeds that solved (seconds from the sweep's start)")  # fmt: skip
    return "\n".join(text + [note])


def _fmt_value(v: Any) -> str:
    return "x".join(map(str, v)) if isinstance(v, (list, tuple)) else f"{v:g}" if isinstance(
        v, float) else str(v)  # fmt: skip


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    atomic_write(path / "summary.json", json.dumps(_jsonable(summary), indent=2, allow_nan=False))
    keys = list(summary["configs"][0]["settings"]) if summary["configs"] else []
    buf = io.StringIO()
    w = csv.writer(buf)
    fields = ["rank", "config", *keys, "seeds"]
    stats = [f"{part}_{k}" for part in ("final", "best")
             for k in ("iqm", "iqm_lo", "iqm_hi", "mean", "mean_lo", "mean_hi", "std")]  # fmt: skip
    w.writerow(fields + stats + ["solved_fraction", "median_steps_to_solve",
                                 "median_seconds_to_solve"])  # fmt: skip
    for e in summary["configs"]:
        row = [e["rank"], e["config"], *(_fmt_value(e["settings"][k]) for k in keys), e["seeds"]]
        for part in ("final", "best"):
            a = e.get(part)
            row += ([a["iqm"], *a["iqm_ci95"], a["mean"], *a["mean_boot_ci95"], a["std"]]
                    if a else [""] * 7)  # fmt: skip
        row += [e.get("solved_fraction", ""), e.get("median_steps_to_solve") or "",
                e.get("median_seconds_to_solve") or ""]  # fmt: skip
        w.writerow(row)
    atomic_write(path / "summary.csv", buf.getvalue())


# --- figures -----------------------------------------------------------------------------------


def iqm_curve(evals: list[dict[str, Any]], config: int, reps: int = CURVE_REPS) -> tuple:
    """``(env_steps, iqm, lo, hi)`` of one configuration's evaluations over its seeds (points
    where every seed was evaluated)."""
    by_step: dict[int, list[float]] = {}
    seeds = {r["seed"] for r in evals if r["config"] == config}
    for r in evals:
        if r["config"] == config:
            by_step.setdefault(r["env_steps"], []).append(r["eval_mean"])
    xs, ys, los, his = [], [], [], []
    for step in sorted(by_step):
        v = by_step[step]
        if len(v) != len(seeds):
            continue
        xs.append(step)
        ys.append(float(iqm(np.asarray(v))))
        lo, hi = bootstrap_ci(v, iqm, reps=reps) if len(v) > 1 else (v[0], v[0])
        los.append(lo)
        his.append(hi)
    return tuple(np.asarray(a, np.float64) for a in (xs, ys, los, his))


def write_figures(
    path: Path,
    summary: dict[str, Any],
    evals: list[dict[str, Any]],
    env_id: str,
    threshold: float | None,
) -> None:
    from matplotlib.figure import Figure

    entries = sorted(summary["configs"], key=lambda e: e["config"])
    labels = {e["config"]: f"{e['config']}: " + ", ".join(
        f"{k}={_fmt_value(v)}" for k, v in e["settings"].items()) for e in entries}  # fmt: skip

    fig = Figure(figsize=(8, 5), dpi=100)
    ax = fig.subplots()
    for i, e in enumerate(entries):
        xs, ys, lo, hi = iqm_curve(evals, e["config"])
        if xs.size:
            ax.plot(xs, ys, color=f"C{i % 10}", lw=1.6, label=labels[e["config"]])
            ax.fill_between(xs, lo, hi, color=f"C{i % 10}", alpha=0.15, lw=0)
    if threshold is not None:
        ax.axhline(threshold, color="grey", ls="--", lw=1, label=f"solved ({threshold:g})")
    ax.set_xlabel("environment steps per seed")
    ax.set_ylabel("evaluation return (IQM over seeds, 95% CI)")
    ax.set_title(f"Sweep on {env_id}: {len(summary['seeds'])} seeds per configuration")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    _save(fig, path / "curves.png")

    ranked = [e for e in summary["configs"] if "final" in e]
    fig = Figure(figsize=(8, 1.2 + 0.35 * max(len(ranked), 1)), dpi=100)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (stat, key, title) in zip(axes, (("iqm", "iqm_ci95", "IQM"),
                                             ("mean", "mean_boot_ci95", "mean")), strict=True):  # fmt: skip
        for y, e in enumerate(reversed(ranked)):
            f = e["final"]
            ax.plot([f[key][0], f[key][1]], [y, y], color="C0", lw=6, alpha=0.4,
                    solid_capstyle="butt")  # fmt: skip
            ax.plot([f[stat]], [y], "|", color="black", ms=12)
        ax.set_title(f"final {title} (95% CI)", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        if threshold is not None:
            ax.axvline(threshold, color="grey", ls="--", lw=1)
    axes[0].set_yticks(range(len(ranked)), [labels[e["config"]] for e in reversed(ranked)],
                       fontsize=7)  # fmt: skip
    fig.tight_layout()
    _save(fig, path / "intervals.png")


def _save(fig: Any, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write(path, buf.getvalue())
