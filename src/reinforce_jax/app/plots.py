"""Learning-curve figures (matplotlib figures without pyplot: no display or backend needed)."""

from __future__ import annotations

import io
import warnings
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from reinforce_jax.app.rundir import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def moving_average(x: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over up to ``window`` points (NaNs ignored; NaN where all are NaN).

    From running sums, not a mean per point: a 64-seed curve's 3,000 points took 0.07 s."""
    x = np.asarray(x, dtype=float)
    finite = ~np.isnan(x)
    sums = np.concatenate([[0.0], np.cumsum(np.where(finite, x, 0.0))])
    counts = np.concatenate([[0], np.cumsum(finite)])
    end = np.arange(1, len(x) + 1)
    start = np.maximum(0, end - window)
    n = counts[end] - counts[start]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (sums[end] - sums[start]) / n, np.nan)


def _by_seed(
    rows: list[dict[str, Any]], x: str, y: str
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    groups: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for r in rows:
        if r.get(x) is not None:
            v = r.get(y)
            groups[int(r.get("seed", 0))].append((r[x], np.nan if v is None else v))
    return {s: (np.array([a for a, _ in g], float), np.array([b for _, b in g], float))
            for s, g in sorted(groups.items())}  # fmt: skip


def with_episode_counts(
    train: list[dict[str, Any]], evals: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Add ``episodes_total`` (episodes finished so far, per seed) to train and evaluation rows.

    Notebook rows count one episode each (``episode``); batched rows count the episodes that
    ended in the update (``episodes``). An evaluation gets the count of the train row it follows.
    """
    totals: dict[tuple[int, int], float] = {}
    running: dict[int, float] = defaultdict(float)
    out_train = []
    for r in train:
        seed = int(r.get("seed", 0))
        if "episode" in r:
            running[seed] = r["episode"] + 1
        else:
            running[seed] += r.get("episodes") or 0
        key = r.get("episode", r.get("update"))
        totals[(seed, key)] = running[seed]
        out_train.append({**r, "episodes_total": running[seed]})
    out_evals = [{**e, "episodes_total": totals.get((int(e.get("seed", 0)),
                                                     e.get("episode", e.get("update"))))}
                 for e in evals]  # fmt: skip
    return out_train, out_evals


def _mean_band(curves: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, ...]:
    """Mean and 95% normal band of several curves, on the first curve's x grid."""
    grid = curves[0][0]
    with warnings.catch_warnings():  # a grid point seen by one curve has no spread: NaN band
        warnings.simplefilter("ignore", RuntimeWarning)
        return _band(grid, curves)


def _band(grid: np.ndarray, curves: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, ...]:
    ys = np.stack([np.interp(grid, cx, cy, left=np.nan, right=np.nan) for cx, cy in curves])
    n = np.sum(np.isfinite(ys), axis=0)
    mean = np.nanmean(ys, axis=0)
    half = (
        1.96 * np.nanstd(ys, axis=0, ddof=1 if len(curves) > 1 else 0) / np.sqrt(np.maximum(n, 1))
    )
    return grid, mean, mean - half, mean + half


def plot_curves(
    runs: Sequence[tuple[str, list[dict[str, Any]], list[dict[str, Any]]]],
    out: str | Path,
    x: str = "env_steps",
    title: str = "REINFORCE",
    threshold: float | None = None,
    window: int = 20,
) -> Path:
    """Draw ``(label, train_rows, eval_rows)`` runs (see :func:`curves_figure`) into ``out``
    (.png or .svg), written atomically."""
    fig = curves_figure(runs, x=x, title=title, threshold=threshold, window=window)
    out = Path(out)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=out.suffix[1:] or "png")
    atomic_write(out, buffer.getvalue())  # a failed write never leaves a broken figure
    return out


def curves_figure(
    runs: Sequence[tuple[str, list[dict[str, Any]], list[dict[str, Any]]]],
    x: str = "env_steps",
    title: str = "REINFORCE",
    threshold: float | None = None,
    window: int = 20,
) -> Figure:
    """A figure of ``(label, train_rows, eval_rows)`` runs: returns, moving average, evaluation
    points.

    Several seeds in one run are drawn as their mean with a 95% band. The figure is made without
    pyplot: no backend is chosen or changed (a notebook's inline plots keep working), and nothing
    needs closing.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5), dpi=100)
    ax = fig.subplots()
    for i, (label, train, evals) in enumerate(runs):
        color = f"C{i}"
        if x == "episodes":
            train, evals = with_episode_counts(train, evals)
            x_key = "episodes_total"
        else:
            x_key = x
        seeds = _by_seed(train, x_key, "episode_return")
        if len(seeds) == 1:
            ((sx, sy),) = seeds.values()
            ax.plot(sx, sy, color=color, alpha=0.25, lw=0.8)
            ax.plot(sx, moving_average(sy, window), color=color, lw=1.8,
                    label=f"{label}: return ({window}-pt average)")  # fmt: skip
        elif seeds:
            smoothed = [(sx, moving_average(sy, window)) for sx, sy in seeds.values()]
            gx, mean, lo, hi = _mean_band(smoothed)
            ax.plot(gx, mean, color=color, lw=1.8, label=f"{label}: mean of {len(seeds)} seeds")
            ax.fill_between(gx, lo, hi, color=color, alpha=0.2, lw=0)
        eseeds = _by_seed(evals, x_key, "eval_mean")
        if len(eseeds) == 1:
            ((ex, ey),) = eseeds.values()
            ax.plot(
                ex, ey, "o", color=color, ms=4, mec="black", mew=0.5, label=f"{label}: evaluation"
            )
        elif eseeds:
            gx, mean, lo, hi = _mean_band(list(eseeds.values()))
            ax.errorbar(gx, mean, yerr=[mean - lo, hi - mean], fmt="o", color=color, ms=4,
                        mec="black", mew=0.5, capsize=2, label=f"{label}: evaluation (95% CI)")  # fmt: skip
    if threshold is not None:
        ax.axhline(threshold, color="grey", ls="--", lw=1, label=f"solved ({threshold:g})")
    labels = {"env_steps": "environment steps", "wall_time": "wall time (s)",
              "episodes": "training episodes"}  # fmt: skip
    ax.set_xlabel(labels.get(x, x))
    ax.set_ylabel("episode return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    # Below the axes, so the legend never hides the points.
    fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=8,
               frameon=False)  # fmt: skip
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    return fig
