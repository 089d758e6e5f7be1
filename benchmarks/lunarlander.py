"""LunarLander-v3 three ways: the envpool compiled trainer, the gymnasium host trainer and the
notebook preset; training throughput (environment steps per second, learning included) and time
to the first 100-episode greedy evaluation >= 200.

Not a test; prints figures (and writes them as JSON with ``--json PATH``)::

    .venv/bin/python benchmarks/lunarlander.py [--seeds 0 1] [--steps 2000000] [--json out.json]

``--command`` instead times what a user types, the whole command (Python start-up, imports and
compilation included), per seed, and re-evaluates each policy on 100 new gymnasium episodes::

    .venv/bin/python benchmarks/lunarlander.py --command --seeds 0 1 2 3 4 [--json out.json]

runs ``reinforce train --env LunarLander-v3 --seed S --stop-when-solved`` then
``reinforce evaluate RUN_DIR --episodes 100 --seed 1000`` (``--eval-seed``: episodes no
training or in-training evaluation pool was seeded with). ``--cache`` says which compilation
cache the commands use: ``shared`` (default), one empty at the start and kept for all the seeds,
as a user's own cache is (the first seed compiles the training program, the others load it);
``cold``, an empty one for each seed; ``user``, the user's own. The ``cache`` column says whether
a seed's command found the training program stored.

Each trainer runs its ``default`` settings (the notebook preset: the notebook's) with
``stop_when_solved`` and at most ``--steps`` environment steps (``--episodes`` for the notebook
preset, which does not solve LunarLander: it measures throughput only). Wall time is the whole
trainer run in this process (compilation included, Python start-up and imports excluded).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
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


def command(seed: int, root: Path, extra: list[str], eval_seed: int,
            cache: Path | None) -> dict[str, Any]:  # fmt: skip
    """``reinforce train`` as a user runs it (timed whole), then ``reinforce evaluate``."""
    run_dir = root / f"seed{seed}"
    cli = [sys.executable, "-m", "reinforce_jax"]
    env = dict(os.environ)
    if cache is not None:
        env["REINFORCE_JAX_CACHE"] = str(cache)
    where = (
        cache
        or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "reinforce-jax" / "jax"
    )
    warm = any((where / "programs").glob("pool-chunk-*"))
    start = time.perf_counter()
    subprocess.run([*cli, "train", "--env", ENV, "--seed", str(seed), "--stop-when-solved",
                    "--run-dir", str(run_dir), "--quiet", *extra], check=True, env=env)  # fmt: skip
    wall = time.perf_counter() - start
    status = json.loads((run_dir / "status.json").read_text())
    out = subprocess.run([*cli, "evaluate", str(run_dir), "--episodes", "100", "--seed",
                          str(eval_seed), "--json"],
                         check=True, capture_output=True, text=True, env=env).stdout  # fmt: skip
    return {"seed": seed, "cache": "warm" if warm else "cold", "command_wall": wall, "trainer": json.loads(
        (run_dir / "config.json").read_text())["config"]["trainer"], "env_steps": status["env_steps"],
            "first_solve": status.get("first_solve"), "fresh_100": json.loads(out)["mean"]}  # fmt: skip


def main_command(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="lunar-bench-"))
    results = []
    print(f"compilation cache: {args.cache}")
    print("seed  trainer  cache  command wall s  env steps at solve  in-training eval  "
          "fresh 100 episodes")  # fmt: skip
    for seed in args.seeds:
        cache = {"shared": root / "cache", "cold": root / f"cache{seed}", "user": None}[args.cache]
        r = command(seed, root, shlex.split(args.extra), args.eval_seed, cache)
        results.append(r)
        s = r["first_solve"] or {}
        print(f"{seed:4d}  {r['trainer']:7s}  {r['cache']:5s}  {r['command_wall']:14.1f}  "
              f"{s.get('env_steps', float('nan')):18,}  {s.get('eval_mean', float('nan')):16.1f}  "
              f"{r['fresh_100']:18.1f}", flush=True)  # fmt: skip
    walls = [r["command_wall"] for r in results]
    solved = [r for r in results if r["first_solve"]]
    fresh = sum(r["fresh_100"] >= 200 for r in results)
    print(f"median command wall {np.median(walls):.1f} s; solved {len(solved)}/{len(results)}; "
          f"fresh 100 episodes >= 200: {fresh}/{len(results)} "
          f"(mean {np.mean([r['fresh_100'] for r in results]):.1f})")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--steps", type=int, default=2_000_000)
    p.add_argument("--episodes", type=int, default=300, help="notebook preset's episodes")
    p.add_argument("--trainers", nargs="+", default=["envpool", "host", "notebook"])
    p.add_argument("--json")
    p.add_argument("--command", action="store_true", help="time the whole reinforce command")
    p.add_argument("--extra", default="", help="more train arguments, one string (--command)")
    p.add_argument("--cache", choices=["shared", "cold", "user"], default="shared",
                   help="the compilation cache of --command's runs (see above)")  # fmt: skip
    p.add_argument("--eval-seed", type=int, default=1000,
                   help="first episode seed of the re-evaluation (--command)")  # fmt: skip
    args = p.parse_args()
    if args.command:
        main_command(args)
        return
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
