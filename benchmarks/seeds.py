"""Many seeds and sweeps, timed as the user waits (not a test; prints figures).

For each K, runs the whole command ``reinforce train --env CartPole-v1 --num-seeds K --seed 100
--stop-when-solved --quiet`` in a fresh process from an empty compilation cache, ``--runs`` times,
and prints the wall time from process start to exit (minimum / median / maximum) beside the
in-process figures the run directory records: training wall time, the first chunk (compilation
included), environment steps per seed, aggregate steps per second, seeds solved. Beside them, a
host reference: a fixed pure-Python loop timed before each run, since the shared host's speed
varies by 2x between days. Optionally a sweep (``--sweep``) the same way.

    python benchmarks/seeds.py                      # K = 1, 8, 64; 3 runs each
    python benchmarks/seeds.py --ks 64 --runs 5 --sweep
    python benchmarks/seeds.py --ks 64 --runs 5 --vs /path/to/other/checkout/src   # paired
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SWEEP = ["--grid", "learning_rate=0.003,0.01,0.03", "--grid", "entropy_coef=0,0.01",
         "--num-seeds", "8", "--total-steps", "200000"]  # fmt: skip


def whole(cmd: list[str], cache: Path, src: str | None = None) -> float:
    env = {**os.environ, "REINFORCE_JAX_CACHE": str(cache), "MPLBACKEND": "Agg"}
    if src:  # another checkout's package (for a paired comparison)
        env["PYTHONPATH"] = src
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr}")
    return wall


def host_reference() -> float:
    """Seconds for a fixed pure-Python loop (10M additions, in this function: local variables),
    printed beside the figures so that runs on different days can be set side by side. It sees
    one core's speed only: on 2026-11-28 it read 0.55-0.93 s while the 64-seed command took
    19.8-25.6 s (8.4 s on a faster day), so a slow day need not show in it."""
    start = time.perf_counter()
    total = 0
    for i in range(10_000_000):
        total += i
    return time.perf_counter() - start


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    return (f"median {fmt.format(statistics.median(values))}  (min {fmt.format(min(values))}, "
            f"max {fmt.format(max(values))})")  # fmt: skip


def run_k(k: int, runs: int, tmp: Path, vs: str | None = None) -> dict:
    """``runs`` cold runs of K seeds; with ``vs`` (another checkout's ``src``) each run is paired
    with one of that code, alternating, so that both see the same machine."""
    out = {}
    for label in ("this", "vs") if vs else ("this",):
        out[label] = dict(whole=[], in_process=[], first_chunk=[], steps=[], seed_steps=[],
                          solved=[])  # fmt: skip
    reference = []
    for i in range(runs):
        reference.append(host_reference())
        for label, src in ((lb, vs if lb == "vs" else None) for lb in out):
            f = out[label]
            run = tmp / f"k{k}-{label}-{i}"
            cmd = [sys.executable, "-m", "reinforce_jax", "train", "--env", "CartPole-v1",
                   "--num-seeds", str(k), "--seed", "100", "--stop-when-solved", "--quiet",
                   "--run-dir", str(run)]  # fmt: skip
            f["whole"].append(whole(cmd, tmp / f"cache-k{k}-{label}-{i}", src))  # new cache: cold
            status = json.loads((run / "status.json").read_text())
            f["in_process"].append(status["wall_time"])
            rows = [json.loads(x) for x in (run / "train.jsonl").read_text().splitlines()]
            f["first_chunk"].append(min(r["wall_time"] for r in rows))
            last: dict[int, int] = {}  # each seed's steps (seeds may stop at their solve)
            for r in rows:
                last[r["seed"]] = max(last.get(r["seed"], 0), r["env_steps"])
            f["steps"].append(max(last.values()))
            f["seed_steps"].append(sum(last.values()))
            f["solved"].append(status.get("solved_seeds", 0))
    print(f"K={k:<3} host reference (10M-add Python loop, before each run) {spread(reference)} s")
    for label, f in out.items():
        f["host_reference"] = reference
        agg = [s / t for s, t in zip(f["seed_steps"], f["in_process"], strict=True)]
        f["aggregate_steps_per_s"] = agg
        name = f"K={k:<3}" if label == "this" else f"  vs {vs}:\n     "
        print(f"{name} whole command        {spread(f['whole'])} s")
        print(f"      in-process training  {spread(f['in_process'])} s")
        print(f"      first chunk (compile) {spread(f['first_chunk'])} s")
        print(
            f"      env steps, slowest seed {spread(f['steps'], '{:,.0f}')}; solved {f['solved']}"
        )
        print(f"      env steps, all seeds {spread(f['seed_steps'], '{:,.0f}')}")
        print(f"      aggregate steps/s    {spread(agg, '{:,.0f}')}", flush=True)
    return dict(k=k, **out)


def parts(ks: list[int], reps: int = 5) -> list[dict]:
    """Milliseconds per call of the chunk's parts at K seeds (compiled separately, warm): one
    rollout, one learner update, one evaluation (untrained greedy policy and a 500-step one)."""
    import jax
    import jax.numpy as jnp

    from reinforce_jax.config import make_config
    from reinforce_jax.envs.registry import make_jax_env
    from reinforce_jax.evaluate import make_jax_evaluate
    from reinforce_jax.rollout.functional import make_jax_rollout
    from reinforce_jax.rollout.trajectory import to_batch
    from reinforce_jax.trainers.compiled import make_compiled_program, seed_keys

    env = make_jax_env("CartPole-v1")
    rows = []
    for k in ks:
        cfg = make_config("CartPole-v1", "default", {"num_seeds": k})
        program = make_compiled_program(cfg, env)
        agent, keys = program.agent, seed_keys(cfg)
        state = program.init(keys)
        roll = make_jax_rollout(env, agent.act, cfg.num_envs, cfg.rollout_steps, cfg.gamma,
                                agent.value)  # fmt: skip
        balance = lambda p, obs, key: (obs[..., 2] + obs[..., 3] > 0).astype(jnp.int32)  # noqa: E731
        fns = {
            "rollout": (jax.jit(jax.vmap(roll)), (state.learner.params, keys)),
            "eval (untrained)": (
                jax.jit(jax.vmap(make_jax_evaluate(env, agent.eval_act, cfg.eval_episodes))),
                (state.learner.params, keys)),
            "eval (500 steps, no net)": (
                jax.jit(jax.vmap(make_jax_evaluate(env, balance, cfg.eval_episodes))),
                (state.learner.params, keys)),
        }  # fmt: skip
        traj = fns["rollout"][0](*fns["rollout"][1])
        update = jax.jit(
            jax.vmap(lambda s, t, a=agent, g=cfg.gamma: a.learner.update(s, to_batch(t, g))[0])
        )
        fns["update"] = (update, (state.learner, traj))
        row = {"k": k}
        for name, (f, a) in fns.items():
            jax.block_until_ready(f(*a))
            start = time.perf_counter()
            for _ in range(reps):
                jax.block_until_ready(f(*a))
            row[name] = (time.perf_counter() - start) / reps * 1000
        print(f"K={k:<3} " + "  ".join(f"{n} {v:.1f} ms" for n, v in row.items() if n != "k")
              + f"   (a chunk: {cfg.eval_every} rollouts + updates, 1 evaluation)", flush=True)  # fmt: skip
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 8, 64])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sweep", action="store_true", help="also time a 6 x 8 CartPole sweep")
    ap.add_argument("--parts", action="store_true", help="time the chunk's parts at each K")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--vs", help="another checkout's src directory: pair every run with its code")
    args = ap.parse_args()
    out: dict = {"ks": []}
    if args.parts:
        out["parts"] = parts(args.ks)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for k in args.ks if args.runs > 0 else ():
            out["ks"].append(run_k(k, args.runs, tmp, args.vs))
        if args.sweep:
            walls = []
            for i in range(args.runs):
                cmd = [sys.executable, "-m", "reinforce_jax", "sweep", "--env", "CartPole-v1",
                       *SWEEP, "--quiet", "--run-dir", str(tmp / f"sweep-{i}")]  # fmt: skip
                walls.append(whole(cmd, tmp / f"cache-sweep-{i}"))
            summary = json.loads((tmp / "sweep-0" / "summary.json").read_text())
            print(f"sweep 6 configs x 8 seeds, 200k steps: whole command {spread(walls)} s "
                  f"(in-process {summary['wall_time']:.1f} s for the first)")  # fmt: skip
            out["sweep"] = dict(whole=walls, in_process_first=summary["wall_time"])
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
