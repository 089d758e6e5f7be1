"""Honest evaluation figures: summary statistics, a 95% confidence interval, solve verdicts."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# Two-sided 95% Student-t quantiles for 1..30 degrees of freedom; 1.96 beyond.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip

# Thresholds reported by `reinforce evaluate`: gymnasium's registered one and the project's solve
# check (the notebook's 500 for CartPole-v1).
THRESHOLDS: dict[str, dict[str, float]] = {
    "CartPole-v1": {"gymnasium": 475.0, "notebook": 500.0},
    "LunarLander-v3": {"gymnasium": 200.0},
}


def t_quantile_975(dof: int) -> float:
    return _T975[dof - 1] if 1 <= dof <= len(_T975) else 1.96


def summarize_returns(
    env_id: str, returns: np.ndarray, threshold: float | None, greedy: bool, seed: int
) -> dict[str, Any]:
    r"""Mean, std, min, max and the 95% t-interval :math:`\bar x \pm t_{.975,n-1} s/\sqrt n`."""
    returns = np.asarray(returns, np.float64)
    n = returns.size
    mean = float(returns.mean())
    std = float(returns.std(ddof=1)) if n > 1 else 0.0
    half = t_quantile_975(n - 1) * std / math.sqrt(n) if n > 1 else float("nan")
    verdicts = {name: mean >= value for name, value in THRESHOLDS.get(env_id, {}).items()}
    return {
        "env": env_id,
        "episodes": int(n),
        "policy": "greedy" if greedy else "sampled",
        "seed": seed,
        "mean": mean,
        "std": std,
        "min": float(returns.min()),
        "max": float(returns.max()),
        "ci95": [mean - half, mean + half],
        "threshold": threshold,
        "solved": bool(threshold is not None and mean >= threshold),
        "thresholds": {name: THRESHOLDS[env_id][name] for name in verdicts},
        "verdicts": verdicts,
        "returns": returns.tolist(),
    }


def format_summary(s: dict[str, Any]) -> str:
    lines = [
        f"{s['env']}: {s['episodes']} {s['policy']} episodes (seed {s['seed']})",
        f"  mean {s['mean']:.2f} ± {s['std']:.2f} (std)   min {s['min']:.1f}   max {s['max']:.1f}",
        f"  95% confidence interval of the mean: [{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}]",
    ]
    for name, ok in s["verdicts"].items():
        lines.append(f"  {name} threshold {s['thresholds'][name]:g}: {'met' if ok else 'not met'}")
    if s["threshold"] is not None:
        lines.append(f"  verdict: {'SOLVED' if s['solved'] else 'not solved'} "
                     f"(solve check: mean >= {s['threshold']:g})")  # fmt: skip
    return "\n".join(lines)
