"""Continuous control (issue 12): per-seed tables for the Gaussian policy on Box action spaces.

Not a test; prints a table per environment (and writes them as JSON with ``--json PATH``)::

    .venv/bin/python benchmarks/continuous.py --env Pendulum-v1 [--seeds 0 1 2 3 4]
        [--set KEY=VALUE ...] [--no-stop] [--runs DIR] [--json out.json]

Each seed is the whole command a user types, timed from outside (Python start-up, imports and
compilation included): ``reinforce train --env ENV --seed S --stop-when-solved --quiet`` with the
environment's default settings (plus any ``--set``), then the solved (or final) policy is evaluated
on 100 new gymnasium episodes with ``reinforce evaluate RUN --episodes 100 --seed 1000 --json``
(episodes the training never saw: its evaluations use other seeds). The table shows the wall time,
the environment steps, the in-training evaluation that stopped the run (or the last one), and the
100 new episodes' mean ± std.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def reinforce(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reinforce_jax", *args], capture_output=True,
                          text=True, check=False)  # fmt: skip


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_seed(env: str, seed: int, sets: list[str], stop: bool, runs: Path) -> dict[str, Any]:
    run_dir = runs / f"{env}-seed{seed}"
    argv = ["train", "--env", env, "--seed", str(seed), "--quiet", "--run-dir", str(run_dir)]
    argv += ["--stop-when-solved"] if stop else []
    for s in sets:
        argv += ["--set", s]
    start = time.perf_counter()
    proc = reinforce(*argv)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"seed {seed}: reinforce train failed:\n{proc.stderr}")
    evals = read_jsonl(run_dir / "eval.jsonl")
    train = read_jsonl(run_dir / "train.jsonl")
    solved = [r for r in evals if r["solved"]]
    last = solved[0] if solved and stop else evals[-1]
    proc = reinforce("evaluate", str(run_dir), "--episodes", "100", "--seed", "1000", "--json")
    if proc.returncode != 0:
        raise SystemExit(f"seed {seed}: reinforce evaluate failed:\n{proc.stderr}")
    fresh = json.loads(proc.stdout)
    return {
        "seed": seed, "run_dir": str(run_dir), "wall_s": wall, "env_steps": train[-1]["env_steps"],
        "episodes": int(sum(r.get("episodes", 0) for r in train)), "solved_in_training": bool(solved),
        "eval_mean": last["eval_mean"], "eval_std": last["eval_std"],
        "eval_episodes": last["eval_episodes"], "fresh_mean": fresh["mean"],
        "fresh_std": fresh["std"], "fresh_solved": fresh["solved"], "threshold": fresh["threshold"],
    }  # fmt: skip


def table(env: str, rows: list[dict[str, Any]]) -> str:
    out = [f"{env} ({len(rows)} seeds; solve check: mean >= {rows[0]['threshold']})",
           f"{'seed':>4} {'wall s':>8} {'env steps':>11} {'episodes':>9}  "
           f"{'in-training eval':>22}  {'100 new episodes':>18}"]  # fmt: skip
    for r in rows:
        mark = "" if r["solved_in_training"] else " (not solved)"
        out.append(
            f"{r['seed']:>4} {r['wall_s']:>8.1f} {r['env_steps']:>11,} {r['episodes']:>9,}  "
            f"{r['eval_mean']:>9.1f} ± {r['eval_std']:<6.1f}({r['eval_episodes']})  "
            f"{r['fresh_mean']:>8.1f} ± {r['fresh_std']:<6.1f}{mark}"
        )
    fresh = np.array([r["fresh_mean"] for r in rows])
    ok = sum(r["fresh_solved"] for r in rows)
    walls = [r["wall_s"] for r in rows]
    out.append(f"new-episode means >= threshold: {ok}/{len(rows)}; median {np.median(fresh):.1f} "
               f"(min {fresh.min():.1f}); wall median {np.median(walls):.1f} s "
               f"({min(walls):.1f}-{max(walls):.1f})")  # fmt: skip
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="Pendulum-v1")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--no-stop", action="store_true", help="train the whole budget")
    p.add_argument("--runs", type=Path, default=None, help="keep the runs here (default: temp)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    os.environ.setdefault("REINFORCE_JAX_CACHE", "off")  # every seed pays its compilation
    with tempfile.TemporaryDirectory() as tmp:
        runs = args.runs or Path(tmp)
        runs.mkdir(parents=True, exist_ok=True)
        rows = []
        for seed in args.seeds:
            rows.append(run_seed(args.env, seed, args.set, not args.no_stop, runs))
            print(f"seed {seed}: {rows[-1]['wall_s']:.1f} s, new episodes "
                  f"{rows[-1]['fresh_mean']:.1f}", file=sys.stderr, flush=True)  # fmt: skip
        print(
            f"settings: {' '.join(args.set) or 'defaults'}; "
            f"{'stop when solved' if not args.no_stop else 'whole budget'}"
        )
        print(table(args.env, rows))
    if args.json:
        args.json.write_text(
            json.dumps({"env": args.env, "sets": args.set, "rows": rows}, indent=1)
        )


if __name__ == "__main__":
    main()
