"""LunarLander-v3 three ways: the envpool compiled trainer, the gymnasium host trainer and the
notebook preset; training throughput (environment steps per second, learning included) and time
to the first 100-episode greedy evaluation >= 200.

Not a test; prints figures (and writes them as JSON with ``--json PATH``)::

    .venv/bin/python benchmarks/lunarlander.py [--seeds 0 1] [--steps 2000000] [--json out.json]

Each trainer runs its ``default`` settings (the notebook preset: the notebook's) with
``stop_when_solved`` and at most ``--steps`` environment steps (``--episodes`` for the notebook
preset, which does not solve LunarLander: it measures throughput only). Wall time is the whole
trainer run in this process (compilation included, Python start-up and imports excluded).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

from reinforce_jax.config import make_config
from reinforce_jax.envs import env_spec
from reinforce_jax.envs import envpool as pools
from reinforce_jax.trainers import build_trainer
from reinforce_jax.trainers.events import Done, EvalRows, TrainRows

ENV = "LunarLander-v3"


def run(trainer_name: str, seed: int, steps: int, episodes: int) -> dict[str, Any]:
    overrides: dict[str, Any] = {"seed": seed, "stop_when_solved": True, "total_steps": steps}
    preset = "default"
    if trainer_name == "notebook":
        preset, overrides = "notebook", {"seed": seed, "num_episodes": episodes}
    else:
        overrides["trainer"] = trainer_name
    cfg = make_config(ENV, preset, overrides)
    start = time.perf_counter()
    trainer = build_trainer(cfg, env_spec(ENV))
    first_train = None  # (wall, env steps) after the first chunk: compilation is behind us
    last_train = (0.0, 0)
    solve = None
    evals = 0
    done = None
    for event in trainer.run():
        now = time.perf_counter() - start
        if isinstance(event, TrainRows):
            steps_now = max(int(r["env_steps"]) for r in event.rows)
            if first_train is None:
                first_train = (now, steps_now)
            last_train = (now, steps_now)
        elif isinstance(event, EvalRows):
            evals += 1
            row = event.rows[0]
            greedy_ok = (
                row.get("greedy_solved", row["solved"])
                if trainer_name == "notebook"
                else row["solved"]
            )
            if greedy_ok and solve is None:
                solve = {"wall": now, "env_steps": int(row["env_steps"]),
                         "eval_mean": float(row.get("greedy_mean", row["eval_mean"]))}  # fmt: skip
        elif isinstance(event, Done):
            done = event
    wall = time.perf_counter() - start
    assert done is not None
    sps = float("nan")
    if first_train is not None and last_train[0] > first_train[0]:
        sps = (last_train[1] - first_train[1]) / (last_train[0] - first_train[0])
    return {"trainer": trainer.name, "seed": seed, "wall": wall, "env_steps": int(done.env_steps),
            "evaluations": evals, "sps_with_learning_and_eval": sps, "solve": solve}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--steps", type=int, default=2_000_000)
    p.add_argument("--episodes", type=int, default=300, help="notebook preset's episodes")
    p.add_argument("--trainers", nargs="+", default=["envpool", "host", "notebook"])
    p.add_argument("--json")
    args = p.parse_args()
    if "envpool" in args.trainers and not pools.available():
        print("envpool is not installed: skipping the envpool trainer")
        args.trainers.remove("envpool")
    results = []
    for name in args.trainers:
        for seed in args.seeds:
            r = run(name, seed, args.steps, args.episodes)
            results.append(r)
            s = r["solve"]
            solved = (f"solved at {s['env_steps']:,} steps, {s['wall']:.1f} s (eval {s['eval_mean']:.1f})"
                      if s else "not solved")  # fmt: skip
            print(f"{r['trainer']:8s} seed {seed}: {r['env_steps']:,} steps in {r['wall']:.1f} s, "
                  f"{r['sps_with_learning_and_eval']:,.0f} steps/s (learning and evaluation "
                  f"included, compilation not), {solved}", flush=True)  # fmt: skip
    for name in args.trainers:
        mine = [
            r
            for r in results
            if r["trainer"] == name or (name == "notebook" and r["trainer"] == "notebook")
        ]
        sps = [r["sps_with_learning_and_eval"] for r in mine]
        solved = [r["solve"]["wall"] for r in mine if r["solve"]]
        print(f"{name}: median {np.median(sps):,.0f} steps/s; solved {len(solved)}/{len(mine)}"
              + (f", median wall to solve {np.median(solved):.1f} s" if solved else ""))  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
