"""The parts of a compiled CartPole chunk, timed alone (not a test; prints figures).

A 64-seed run trains its seeds in groups of 4 rows (``compiled.group_size``); each chunk of a group
is 5 rollouts of 4 environments x 500 steps, 5 learner updates and an evaluation. This compiles each
part for 4 rows as the chunk does (``loop_options``) and times ``--calls`` calls of it, minimum and
median, on whatever cores the process may use (pin it: ``taskset -c 0``)::

    taskset -c 0 python benchmarks/chunk_parts.py
    PYTHONPATH=/other/checkout/src taskset -c 0 python benchmarks/chunk_parts.py   # another version
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

from reinforce_jax.config import make_config
from reinforce_jax.envs import env_spec
from reinforce_jax.envs.registry import make_jax_env
from reinforce_jax.evaluate import make_jax_evaluate
from reinforce_jax.rollout.functional import make_jax_rollout
from reinforce_jax.rollout.trajectory import to_batch
from reinforce_jax.trainers.common import build_agent, init_learner, loop_options, prng_keys

ROWS, UPDATES = 4, 5


def timed(name: str, f, *args, calls: int) -> None:
    compiled = jax.jit(f).lower(*args).compile(compiler_options=loop_options())
    jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - start)
    print(f"{name}: min {min(times) * 1e3:.2f} ms, median {statistics.median(times) * 1e3:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=15)
    calls = parser.parse_args().calls
    cfg = make_config("CartPole-v1")
    env, spec = make_jax_env("CartPole-v1"), env_spec("CartPole-v1")
    steps = cfg.num_envs * cfg.rollout_steps
    agent = build_agent(cfg, spec, 500, steps)
    rollout = make_jax_rollout(env, agent.act, cfg.num_envs, cfg.rollout_steps, cfg.gamma,
                               agent.value)  # fmt: skip
    keys = jnp.asarray(prng_keys(range(ROWS)))
    learner = jax.vmap(lambda k: init_learner(agent, k))(keys)

    def rollouts(params, keys):
        def one(p, k):
            windows = jax.random.split(k, UPDATES)
            return jax.lax.scan(lambda c, w: (c, rollout(p, w).rewards.sum()), 0, windows)[1]

        return jax.vmap(one)(params, keys)

    def learn(state, traj):
        def one(s, t):
            batch = to_batch(t, cfg.gamma)
            return jax.lax.scan(lambda s, _: agent.learner.update(s, batch), s, None, UPDATES)[0]

        return jax.vmap(one)(state, traj)

    traj = jax.vmap(rollout)(learner.params, keys)
    evaluate = jax.vmap(make_jax_evaluate(env, agent.eval_act, cfg.eval_episodes, range(20)))
    print(f"CartPole-v1 chunk parts, {ROWS} rows, {calls} calls each (initial policies)")
    timed(f"{UPDATES} rollouts of {cfg.num_envs} x {cfg.rollout_steps} steps", rollouts,
          learner.params, keys, calls=calls)  # fmt: skip
    timed(f"{UPDATES} learner updates on {steps} steps", learn, learner, traj, calls=calls)
    timed("20-episode greedy evaluation", evaluate, learner.params, keys, calls=calls)


if __name__ == "__main__":
    main()
