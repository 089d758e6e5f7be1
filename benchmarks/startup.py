"""Start-up benchmark: the whole ``reinforce train --env CartPole-v1 --stop-when-solved`` command.

Runs the command as a fresh process, cold (an empty compilation cache) and warm (the same cache
again), several times each, and prints min/median/max of the whole process's wall time beside
where the seconds go inside the process (imports, tracing, lowering, XLA compile or cache read,
the learning-curve figure, the rest: training and files), read from JAX's own duration events.

    python benchmarks/startup.py                   # 5 cold and 5 warm runs
    python benchmarks/startup.py --runs 3 --json benchmarks/results/startup-2core.json

Run it on a quiet machine; on a shared one, compare before and after side by side.
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

COMMAND = ["train", "--env", "CartPole-v1", "--stop-when-solved", "--quiet"]
PHASES = ("imports", "tracing", "lowering", "compile", "curve", "other")


def profile_child(run_dir: str) -> dict:
    """In this process: the command with timers around its phases (seconds)."""
    t0 = time.perf_counter()
    import jax  # noqa: F401  (the command imports it too; counted as imports)

    from reinforce_jax.app import cli, session

    imports = time.perf_counter() - t0
    clock = {"tracing": 0.0, "lowering": 0.0, "compile": 0.0, "curve": 0.0}
    events = {
        "/jax/core/compile/jaxpr_trace_duration": "tracing",
        "/jax/core/compile/jaxpr_to_mlir_module_duration": "lowering",
        "/jax/core/compile/backend_compile_duration": "compile",
        "/jax/compilation_cache/cache_retrieval_time_sec": "compile",
    }

    def listener(event: str, duration: float, **_: object) -> None:
        if event in events:
            clock[events[event]] += duration

    jax.monitoring.register_event_duration_secs_listener(listener)
    plot = session._plot

    def timed_plot(*args: object, **kwargs: object) -> object:
        t = time.perf_counter()
        try:
            return plot(*args, **kwargs)
        finally:
            clock["curve"] += time.perf_counter() - t

    session._plot = timed_plot
    t1 = time.perf_counter()
    code = cli.main([*COMMAND, "--run-dir", run_dir])
    body = time.perf_counter() - t1
    inner = sum(clock.values())
    return {"exit": code, "imports": imports, **clock, "other": body - inner,
            "in_process": imports + body}  # fmt: skip


def run(args: list[str], cache: str) -> tuple[float, str]:
    env = dict(os.environ, REINFORCE_JAX_CACHE=cache)
    t = time.perf_counter()
    proc = subprocess.run(args, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stderr}")
    return wall, proc.stdout


def summary(values: list[float]) -> str:
    return (f"median {statistics.median(values):5.2f} s  (min {min(values):5.2f}, "
            f"max {max(values):5.2f})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="cold and warm runs each")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(profile_child(args.child)))
        return

    whole: dict[str, list[float]] = {"cold": [], "warm": []}
    phases: dict[str, list[dict]] = {"cold": [], "warm": []}
    command = [sys.executable, "-m", "reinforce_jax", *COMMAND]
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            # Whole command (cold, then warm on the same cache), then the profiled pair.
            for kind, cache in (("whole", f"{tmp}/c{i}"), ("profiled", f"{tmp}/p{i}")):
                for state in ("cold", "warm"):
                    out = f"{tmp}/{kind}-{state}-{i}"
                    if kind == "whole":
                        wall, _ = run([*command, "--run-dir", out], cache)
                        whole[state].append(wall)
                    else:
                        _, stdout = run([sys.executable, __file__, "--child", out], cache)
                        phases[state].append(json.loads(stdout.strip().splitlines()[-1]))
    print(f"reinforce {' '.join(COMMAND)}: {args.runs} runs each, {os.cpu_count()} CPUs")
    result: dict = {"command": COMMAND, "runs": args.runs, "cpu_count": os.cpu_count()}
    for state in ("cold", "warm"):
        print(f"\n{state} ({'empty' if state == 'cold' else 'reused'} compilation cache)")
        print(f"  whole command      {summary(whole[state])}")
        print("  in-process, by phase (a second set of runs, timers on):")
        for name in (*PHASES, "in_process"):
            print(f"    {name:16} {summary([p[name] for p in phases[state]])}")
        result[state] = {"whole_s": whole[state],
                         "phases_s": {n: [p[n] for p in phases[state]]
                                      for n in (*PHASES, "in_process")}}  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
