"""LunarLander-v3 on the host trainer: rollout throughput, learner share, time to 200.

Not a test; prints figures (and writes them as JSON with ``--json PATH``)::

    .venv/bin/python benchmarks/lunarlander.py [--seed 0] [--steps 40000] [--json out.json]

1. Environment steps per second of each rollout option: gymnasium ``SyncVectorEnv`` and
   ``AsyncVectorEnv`` (same-step autoreset, no rendering), with random actions and with the
   jitted policy of the default config choosing the actions.
2. One training run of the ``default`` preset with ``stop_when_solved``: the share of wall time in
   the learner update, in the rollout and in evaluation, and the time-to-200 curve (greedy
   evaluation mean over 100 episodes against wall time and environment steps).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from reinforce_jax.agent import make_act, make_host_act
from reinforce_jax.config import make_config
from reinforce_jax.core import Categorical
from reinforce_jax.envs import env_spec
from reinforce_jax.envs.vector import make_vector_env
from reinforce_jax.networks import make_networks
from reinforce_jax.trainers import build_trainer
from reinforce_jax.trainers.events import EvalRows, TrainRows

ENV = "LunarLander-v3"


def steps_per_second(mode: str, num_envs: int, steps: int, policy: bool, seed: int) -> float:
    """Environment steps per second of a ``mode`` vector env, random or jitted-policy actions."""
    cfg = make_config(ENV)
    envs = make_vector_env(ENV, num_envs, "gymnasium" if mode == "sync" else "gymnasium-async")
    try:
        obs = envs.reset(seed)
        rng = np.random.default_rng(seed)
        key = jax.random.PRNGKey(seed)
        if policy:
            nets = make_networks(4, cfg.hidden_sizes, cfg.activation)
            params = {"policy": nets.policy.init(key, jnp.zeros((1, 8)))}
            act = make_host_act(make_act(nets, Categorical(4), greedy=False))
            act(params, obs, key)[0].block_until_ready()  # compile outside the clock
        iters = max(1, steps // num_envs)
        start = time.perf_counter()
        for _ in range(iters):
            if policy:
                action, key = act(params, obs, key)
                action = np.asarray(action)
            else:
                action = rng.integers(0, 4, num_envs)
            obs = envs.step(action).obs
        return iters * num_envs / (time.perf_counter() - start)
    finally:
        envs.close()


def training_run(seed: int) -> dict[str, Any]:
    """Train the default config with stop_when_solved; time shares and the eval curve."""
    cfg = make_config(ENV, overrides={"seed": seed, "stop_when_solved": True})
    start = time.perf_counter()
    train, evals = [], []
    for event in build_trainer(cfg, env_spec(ENV)).run():
        if isinstance(event, TrainRows):
            train += event.rows
        elif isinstance(event, EvalRows):
            evals += event.rows
    wall = time.perf_counter() - start
    learn = sum(r["learn_time"] for r in train)
    roll = sum(r["rollout_time"] for r in train)
    return {
        "config": cfg.to_dict(),
        "wall_time": wall,
        "env_steps": train[-1]["env_steps"],
        "updates": len(train),
        "learner_fraction": learn / wall,
        "rollout_fraction": roll / wall,
        "other_fraction": 1 - (learn + roll) / wall,  # evaluation, episode assembly, compilation
        "mean_learn_ms": 1e3 * learn / len(train),
        "mean_rollout_ms": 1e3 * roll / len(train),
        "curve": [
            {k: r[k] for k in ("update", "env_steps", "wall_time", "eval_mean", "eval_std")}
            for r in evals
        ],  # fmt: skip
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=40_000, help="steps per throughput measurement")
    p.add_argument("--num-envs", type=int, default=None, help="default: the config's num_envs")
    p.add_argument("--skip-train", action="store_true", help="throughput only")
    p.add_argument("--json", help="also write the figures to this JSON file")
    args = p.parse_args()
    n = args.num_envs or make_config(ENV).num_envs
    print(f"{ENV}, {n} environments, {os.cpu_count()} CPU cores, jax {jax.__version__}, "
          f"gymnasium {gym.__version__}")  # fmt: skip
    results: dict[str, Any] = {"num_envs": n, "throughput": {}}
    print("\nenvironment steps per second")
    for mode in ("sync", "async"):
        for policy in (False, True):
            steps = args.steps if mode == "sync" else args.steps // 2
            sps = steps_per_second(mode, n, steps, policy, args.seed)
            name = f"{mode}/{'policy' if policy else 'random'}"
            results["throughput"][name] = sps
            print(f"  {mode:5s} vector env, {'jitted policy' if policy else 'random actions':14s}: "
                  f"{sps:9,.0f} steps/s")  # fmt: skip
    if not args.skip_train:
        print(f"\ntraining run (default preset, seed {args.seed}, stop when solved)")
        run = training_run(args.seed)
        results["training"] = run
        print(f"  {run['updates']} updates, {run['env_steps']:,} env steps, "
              f"{run['wall_time']:.1f}s wall")  # fmt: skip
        print(f"  wall time in learner update: {100 * run['learner_fraction']:.1f}% "
              f"({run['mean_learn_ms']:.1f} ms/update); rollout: "
              f"{100 * run['rollout_fraction']:.1f}% ({run['mean_rollout_ms']:.1f} ms/update); "
              f"evaluation and the rest: {100 * run['other_fraction']:.1f}%")  # fmt: skip
        print("  time to 200 (greedy evaluation, 100 episodes):")
        print(f"  {'update':>7s} {'env steps':>10s} {'wall s':>7s} {'eval mean':>10s}")
        for r in run["curve"]:
            print(f"  {r['update']:7d} {r['env_steps']:10,d} {r['wall_time']:7.1f} "
                  f"{r['eval_mean']:7.1f} ± {r['eval_std']:.1f}")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, default=float)
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
