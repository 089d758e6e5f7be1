"""CartPole-v1 benchmark: the notebook preset against the compiled default (not a test).

Prints, for each trainer over several seeds (median, min, max): wall seconds to the first solve
(mean return 500 over 100 greedy evaluation episodes) with and without compilation, environment
steps to solve, and training throughput (environment steps per second with learning); for the
compiled default both on a cold start (empty persistent compilation cache) and with a warm cache.
Then K-seed scaling (K seeds vmapped in one program): wall time and aggregate steps per second.

    python benchmarks/cartpole.py                       # everything (about 10 minutes on 2 cores)
    python benchmarks/cartpole.py --notebook-seeds 1    # quicker
    python benchmarks/cartpole.py --json results.json   # also write the figures as JSON

The notebook preset's solve check applies the same 100-episode greedy evaluation (JAX CartPole,
identical dynamics) to its parameters at each of its evaluation points; that time is not counted.
Compilation time is measured from JAX's own compile-duration events (tracing, lowering, compiling).
Each compiled measurement runs in a fresh process so that "cold" really is cold.
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

THRESHOLD = 500.0
EVAL_EPISODES = 100


def _compile_clock() -> list[float]:
    """Accumulates JAX's compile-related durations (seconds) into a one-element list."""
    import jax

    total = [0.0]
    names = ("/jax/core/compile/", "/jax/compilation_cache/")

    def listener(event: str, duration: float, **_: object) -> None:
        if event.startswith(names) and event.endswith("duration"):
            total[0] += duration

    jax.monitoring.register_event_duration_secs_listener(listener)
    return total


def solve_compiled(seed: int, num_seeds: int, max_steps: int) -> dict:
    """In this process: train the compiled default until every seed solves; time everything."""
    t_import = time.perf_counter()
    import numpy as np

    from reinforce_jax.app.cli import enable_compilation_cache
    from reinforce_jax.config import make_config
    from reinforce_jax.envs import make_jax_env
    from reinforce_jax.trainers.compiled import make_compiled_program, seed_keys

    import_s = time.perf_counter() - t_import
    enable_compilation_cache()
    # JAX's compilation cache only: this measures tracing and compiling ahead of time (the whole
    # command with the trainers' program cache is benchmarks/startup.py).
    from reinforce_jax.trainers import export_cache

    export_cache.set_directory(None)
    compile_clock = _compile_clock()
    start = time.perf_counter()
    cfg = make_config(
        "CartPole-v1",
        overrides={"seed": seed, "num_seeds": num_seeds, "total_steps": max_steps,
                   "stop_when_solved": True},
    )  # fmt: skip
    trainer = make_compiled_program(cfg, make_jax_env("CartPole-v1"), rows=num_seeds)
    state = trainer.init(seed_keys(cfg))
    chunk = trainer.chunk.lower(state).compile()
    ready = time.perf_counter()
    first_solve = np.full(num_seeds, -1)
    steps = 0
    for _ in range(trainer.num_updates // cfg.eval_every):
        state, metrics = chunk(state)
        means = np.asarray(metrics["eval_returns"]).mean(axis=-1)
        steps = int(np.asarray(metrics["env_steps"])[0, -1])
        first_solve[(means >= THRESHOLD) & (first_solve < 0)] = steps
        if (first_solve >= 0).all():
            break
    end = time.perf_counter()
    return {
        "import_s": import_s,
        "wall_s": end - start,  # setup + compile + train
        "compile_s": compile_clock[0],
        "train_s": end - ready,
        "wall_without_compile_s": end - start - compile_clock[0],
        "env_steps": steps,
        "steps_to_solve": first_solve.tolist(),
        "solved": int((first_solve >= 0).sum()),
        "num_seeds": num_seeds,
        "steps_per_s": num_seeds * steps / (end - ready),
    }


def run_child(args: list[str], cache_dir: str) -> dict:
    env = dict(os.environ, REINFORCE_JAX_CACHE=cache_dir)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True,
                          text=True, check=True)  # fmt: skip
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - t0
    return result


def solve_notebook(seed: int, max_episodes: int) -> dict:
    """The notebook preset until its parameters pass the 100-episode greedy check."""
    import jax
    import numpy as np

    from reinforce_jax.agent import make_act
    from reinforce_jax.config import make_config
    from reinforce_jax.core import Categorical
    from reinforce_jax.envs import env_spec, make_jax_env
    from reinforce_jax.evaluate import make_jax_evaluate
    from reinforce_jax.networks import make_networks
    from reinforce_jax.trainers import build_trainer
    from reinforce_jax.trainers.events import EvalRows, TrainRows

    cfg = make_config("CartPole-v1", "notebook", {"seed": seed, "num_episodes": max_episodes})
    nets = make_networks(2, cfg.hidden_sizes)
    check = jax.jit(make_jax_evaluate(make_jax_env("CartPole-v1"),
                                      make_act(nets, Categorical(2), greedy=True), EVAL_EPISODES))  # fmt: skip
    key = jax.random.PRNGKey(10_000 + seed)
    check({"policy": nets.policy.init(key, np.zeros((1, 4)))}, key)  # warm
    trainer = build_trainer(cfg, env_spec("CartPole-v1"))
    compile_clock = _compile_clock()
    start = time.perf_counter()
    excluded = 0.0
    result = {"solved": 0, "steps_to_solve": None, "episode": None}
    steps = 0
    for event in trainer.run():
        if isinstance(event, TrainRows):
            steps = event.rows[-1]["env_steps"]
        if isinstance(event, EvalRows):
            t = time.perf_counter()
            params = jax.tree.map(lambda x: x[0], event.params)
            returns = np.asarray(check(params, key))
            excluded += time.perf_counter() - t
            if returns.mean() >= THRESHOLD:
                result.update(solved=1, steps_to_solve=steps, episode=event.rows[0]["episode"])
                break
    train_s = time.perf_counter() - start - excluded
    result.update(
        wall_s=train_s,
        compile_s=compile_clock[0],
        wall_without_compile_s=train_s - compile_clock[0],
        env_steps=steps,
        steps_per_s=steps / train_s,
    )
    return result


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def fmt(s: dict, unit: str = "", digits: int = 2) -> str:
    return (f"median {s['median']:.{digits}f}{unit}  (min {s['min']:.{digits}f}, "
            f"max {s['max']:.{digits}f})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds for the compiled default")
    parser.add_argument("--notebook-seeds", type=int, default=5)
    parser.add_argument("--notebook-max-episodes", type=int, default=2500)
    parser.add_argument("--scaling", default="1,8,64", help="K values for K-seed scaling")
    parser.add_argument("--max-steps", type=int, default=1_000_000)
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--child", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(solve_compiled(*args.child)))
        return

    out: dict = {
        "threshold": THRESHOLD,
        "eval_episodes": EVAL_EPISODES,
        "cpu_count": os.cpu_count(),
    }
    print(f"CartPole-v1: first solve = mean {THRESHOLD:g} over {EVAL_EPISODES} greedy episodes\n")

    cold, warm = [], []
    for seed in range(args.seeds):
        with tempfile.TemporaryDirectory() as cache:
            child = ["--child", str(seed), "1", str(args.max_steps)]
            cold.append(run_child(child, cache))
            warm.append(run_child(child, cache))
    for name, runs in (("cold start", cold), ("warm cache", warm)):
        print(f"compiled default, {name} ({args.seeds} seeds, each in a fresh process):")
        print(f"  solved                    {sum(r['solved'] for r in runs)}/{len(runs)}")
        print(f"  wall to solve             {fmt(summary([r['wall_s'] for r in runs]), ' s')}")
        print(
            f"  ... without compilation   {fmt(summary([r['wall_without_compile_s'] for r in runs]), ' s')}"
        )
        print(f"  compilation               {fmt(summary([r['compile_s'] for r in runs]), ' s')}")
        print(f"  process (with imports)    {fmt(summary([r['process_s'] for r in runs]), ' s')}")
    steps = summary([r["env_steps"] for r in cold])
    tput = summary([r["steps_per_s"] for r in cold])
    print(f"  env steps to solve        {fmt(steps, '', 0)}")
    print(f"  training throughput       {fmt(tput, ' steps/s', 0)}\n")
    out["compiled_cold"], out["compiled_warm"] = cold, warm
    out["compiled_summary"] = {
        "wall_to_solve_cold_s": summary([r["wall_s"] for r in cold]),
        "wall_to_solve_warm_s": summary([r["wall_s"] for r in warm]),
        "wall_without_compile_s": summary([r["wall_without_compile_s"] for r in cold]),
        "env_steps_to_solve": steps,
        "steps_per_s": tput,
        "solved": sum(r["solved"] for r in cold),
    }

    if args.notebook_seeds:
        nb = []
        for seed in range(args.notebook_seeds):
            r = solve_notebook(seed, args.notebook_max_episodes)
            print(f"  notebook seed {seed}: solved={r['solved']} at episode {r['episode']}, "
                  f"{r['env_steps']} steps, {r['wall_s']:.1f} s, {r['steps_per_s']:.0f} steps/s",
                  flush=True)  # fmt: skip
            nb.append(r)
        solved = [r for r in nb if r["solved"]]
        print(f"notebook preset ({len(nb)} seeds, in this process):")
        print(f"  solved                    {len(solved)}/{len(nb)}")
        if solved:
            print(
                f"  wall to solve             {fmt(summary([r['wall_s'] for r in solved]), ' s', 1)}"
            )
            print(
                f"  ... without compilation   {fmt(summary([r['wall_without_compile_s'] for r in solved]), ' s', 1)}"
            )
            print(
                f"  env steps to solve        {fmt(summary([r['env_steps'] for r in solved]), '', 0)}"
            )
        nb_tput = summary([r["steps_per_s"] for r in nb])
        print(f"  training throughput       {fmt(nb_tput, ' steps/s', 0)}\n")
        out["notebook"] = nb
        out["notebook_summary"] = {"steps_per_s": nb_tput, "solved": len(solved)}
        out["throughput_ratio"] = tput["median"] / nb_tput["median"]
        print(f"throughput ratio (compiled default / notebook preset, env steps/s with learning): "
              f"{out['throughput_ratio']:.0f}x\n")  # fmt: skip

    scaling = []
    print("K-seed scaling (compiled default, cold cache, until every seed solves):")
    for k in (int(v) for v in args.scaling.split(",")):
        with tempfile.TemporaryDirectory() as cache:
            r = run_child(["--child", "0", str(k), str(args.max_steps)], cache)
        r["K"] = k
        scaling.append(r)
        print(f"  K={k:<3d} solved {r['solved']:>2d}/{k:<3d} wall {r['wall_s']:6.2f} s "
              f"(compile {r['compile_s']:.2f} s, train {r['train_s']:.2f} s)  "
              f"aggregate {r['steps_per_s']:,.0f} steps/s", flush=True)  # fmt: skip
        if args.notebook_seeds:
            r["throughput_ratio"] = r["steps_per_s"] / nb_tput["median"]
    out["scaling"] = scaling
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
