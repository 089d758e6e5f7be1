"""The sweep that chose the continuous-action defaults: 5 seeds vmapped in one compiled run.

Not a test; prints one line per setting: the mean over seeds of the evaluation at a quarter, half,
three quarters and the end of the budget, the last evaluation per seed, and the worst seed's mean
of its last three evaluations::

    .venv/bin/python benchmarks/continuous_sweep.py Pendulum-v1 total_steps=3000000 \\
        eval_episodes=50 action_bounds=clip gamma=0.95

Settings are ``KEY=VALUE`` on top of the environment's defaults (JSON values: numbers, lists,
true/false; anything else is text). Only environments with a JAX implementation (compiled trainer).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from reinforce_jax.config import make_config
from reinforce_jax.envs import env_spec
from reinforce_jax.trainers import build_trainer
from reinforce_jax.trainers.events import EvalRows


def main() -> None:
    env = sys.argv[1]
    over: dict = {}
    for kv in sys.argv[2:]:
        k, v = kv.split("=", 1)
        try:
            over[k] = json.loads(v)
        except json.JSONDecodeError:
            over[k] = v
    if isinstance(over.get("hidden_sizes"), list):
        over["hidden_sizes"] = tuple(over["hidden_sizes"])
    over.setdefault("num_seeds", 5)
    cfg = make_config(env, overrides=over)
    start = time.time()
    hist = []
    for ev in build_trainer(cfg, env_spec(env)).run():
        if isinstance(ev, EvalRows):
            hist.append([r["eval_mean"] for r in ev.rows])
    h = np.array(hist)
    per_chunk = cfg.eval_every * cfg.num_envs * cfg.rollout_steps
    points = [len(h) // 4, len(h) // 2, 3 * len(h) // 4, len(h) - 1]
    curve = " ".join(f"@{(p + 1) * per_chunk // 1000}k:{h[p].mean():.0f}" for p in points)
    print(f"{' '.join(sys.argv[2:])} | wall {time.time() - start:.0f}s | {curve} | last per seed "
          f"{np.round(h[-1]).tolist()} | worst last-3 {h[-3:].mean(0).min():.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
