"""Start-up benchmark: the whole ``reinforce train --env CartPole-v1 --stop-when-solved`` command.

Runs the command as a fresh process, cold (an empty compilation cache) and warm (the same cache
again), several times each, and prints min/median/max of the whole process's wall time beside
where the seconds go inside the process, from timers and JAX's own duration events: imports (JAX
and the command's modules), tracing, lowering, compile (XLA's, or reading JAX's compilation cache),
curve (drawing curve.png) and other (the rest: later imports, training, files). Phases in threads
overlap (on a cold start the chunk compiles beside init), so their sum can exceed the wall time and
"other" can be negative.

    python benchmarks/startup.py                   # 5 cold and 5 warm runs
    python benchmarks/startup.py --vs /path/to/older/src --json results.json  # side by side

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
        "/jax/core/compile/backend_compile_duration": "compile",  # or the compile cache's read
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


def run(args: list[str], cache: str, src: str | None) -> tuple[float, str]:
    env = dict(os.environ, REINFORCE_JAX_CACHE=cache)
    if src:  # another version's source tree first on the path
        env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [env.get("PYTHONPATH")])])
    t = time.perf_counter()
    proc = subprocess.run(args, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stderr}")
    return wall, proc.stdout


def summary(values: list[float]) -> str:
    return (f"median {statistics.median(values):5.2f} s  (min {min(values):5.2f}, "
            f"max {max(values):5.2f})")  # fmt: skip


def measure(runs: int, src: str | None, tmp: str) -> dict:
    """Whole-command wall times and in-process phases, cold and warm, for one version."""
    whole: dict[str, list[float]] = {"cold": [], "warm": []}
    phases: dict[str, list[dict]] = {"cold": [], "warm": []}
    command = [sys.executable, "-m", "reinforce_jax", *COMMAND]
    tag = "base" if src else "this"
    for _ in range(runs):
        # The whole command (cold, then warm on its cache), then a profiled pair on another cache.
        for kind in ("whole", "profiled"):
            cache = tempfile.mkdtemp(dir=tmp, prefix=f"cache-{tag}-{kind}-")
            for state in ("cold", "warm"):
                out = tempfile.mktemp(dir=tmp, prefix=f"run-{tag}-")
                if kind == "whole":
                    whole[state].append(run([*command, "--run-dir", out], cache, src)[0])
                else:
                    _, stdout = run([sys.executable, __file__, "--child", out], cache, src)
                    phases[state].append(json.loads(stdout.strip().splitlines()[-1]))
    return {state: {"whole_s": whole[state],
                    "phases_s": {n: [p[n] for p in phases[state]] for n in (*PHASES, "in_process")}}
            for state in ("cold", "warm")}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="cold and warm runs each")
    parser.add_argument("--vs", metavar="SRC",
                        help="also measure another version: its source folder (e.g. a checkout's "
                        "src/), run in turn with this one")  # fmt: skip
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(profile_child(args.child)))
        return

    versions = {"this": None, **({"vs": args.vs} if args.vs else {})}
    results: dict[str, dict] = {name: {} for name in versions}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.runs):  # versions in turn, so a drift of the machine's speed hits both
            for name, src in versions.items():
                one = measure(1, src, tmp)
                for state, figures in one.items():
                    merged = results[name].setdefault(state, {"whole_s": [], "phases_s": {}})
                    merged["whole_s"] += figures["whole_s"]
                    for n, v in figures["phases_s"].items():
                        merged["phases_s"].setdefault(n, []).extend(v)
    print(f"reinforce {' '.join(COMMAND)}: {args.runs} runs each, {os.cpu_count()} CPUs")
    for name, src in versions.items():
        print(f"\n== {name}" + (f" ({src})" if src else ""))
        for state in ("cold", "warm"):
            r = results[name][state]
            print(f"{state} ({'empty' if state == 'cold' else 'reused'} compilation cache)")
            print(f"  whole command      {summary(r['whole_s'])}")
            print("  in-process, by phase (a second set of runs, timers on; threads overlap):")
            for n in (*PHASES, "in_process"):
                print(f"    {n:16} {summary(r['phases_s'][n])}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": COMMAND, "runs": args.runs, "cpu_count": os.cpu_count(),
                       "versions": {n: {"src": s, **results[n]} for n, s in versions.items()}},
                      f, indent=1)  # fmt: skip


if __name__ == "__main__":
    main()
