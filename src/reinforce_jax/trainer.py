"""The compiled trainer: rollout, returns, loss, gradients and optax update in one XLA program.

Shaped after PureJaxRL's ``make_train``: :func:`make_compiled_trainer` returns pure functions;
``chunk(state)`` runs ``cfg.eval_every`` updates with ``lax.scan`` and then evaluates, all inside one
``jax.jit``. Python runs only between chunks (logging, checkpoints, the solve check). Seeds are a
leading ``vmap`` axis; with several devices that axis is sharded (``NamedSharding``), so the same
code runs on one CPU, several GPUs, or several hosts after ``jax.distributed.initialize()``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from reinforce_jax.config import Config, ConfigError
from reinforce_jax.envs import make_jax_env
from reinforce_jax.learner import LearnerState, make_learner
from reinforce_jax.policy import Networks, make_networks
from reinforce_jax.rollout import episode_stats, make_jax_evaluate, make_jax_rollout, to_batch

# XLA options for programs that run once, where compile time is all that matters.
RUN_ONCE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


class RunnerState(NamedTuple):
    learner: LearnerState
    key: jax.Array  # the run's PRNG key, split once per update and per evaluation
    env_steps: jax.Array  # environment steps taken so far (per seed)


class CompiledTrainer(NamedTuple):
    init: Callable[[jax.Array], RunnerState]  # keys[S] -> state, jitted, over seeds
    chunk: Callable[[RunnerState], tuple[RunnerState, dict[str, Any]]]  # jitted, over seeds
    evaluate: Callable[..., jax.Array]  # (policy_params, key) -> returns[eval_episodes]
    networks: Networks
    steps_per_update: int
    num_updates: int  # total, rounded up to whole chunks


def num_updates_for(cfg: Config) -> int:
    """Updates needed to spend ``total_steps``, rounded up to whole chunks of ``eval_every``."""
    per_update = cfg.num_envs * cfg.rollout_steps
    chunks = max(1, math.ceil(cfg.total_steps / (per_update * cfg.eval_every)))
    return chunks * cfg.eval_every


def make_compiled_trainer(cfg: Config, env: Any) -> CompiledTrainer:
    """Pure functions for the compiled path of ``cfg`` on the JAX environment ``env``."""
    networks = make_networks(
        env.num_actions, cfg.hidden_sizes, cfg.activation, with_value=cfg.baseline == "value"
    )
    num_updates = num_updates_for(cfg)
    learner = make_learner(cfg, networks, num_updates)
    rollout = make_jax_rollout(
        env, networks, cfg.num_envs, cfg.rollout_steps, cfg.gamma, cfg.baseline == "value"
    )
    evaluate = make_jax_evaluate(env, networks.policy.apply, cfg.eval_episodes, cfg.eval_greedy)
    steps_per_update = cfg.num_envs * cfg.rollout_steps

    def init(key: jax.Array) -> RunnerState:
        key, init_key = jax.random.split(key)
        learner_state = learner.init(init_key, jnp.zeros((1, *env.obs_shape), jnp.float32))
        return RunnerState(learner_state, key, jnp.zeros((), jnp.int32))

    def update(state: RunnerState, _: Any) -> tuple[RunnerState, dict[str, jax.Array]]:
        key, rollout_key = jax.random.split(state.key)
        traj = rollout(state.learner.params, rollout_key)
        learner_state, metrics = learner.update(state.learner, to_batch(traj, cfg.gamma))
        metrics.update(episode_stats(traj))
        env_steps = state.env_steps + steps_per_update
        metrics["env_steps"] = env_steps
        return RunnerState(learner_state, key, env_steps), metrics

    def chunk_one(state: RunnerState) -> tuple[RunnerState, dict[str, Any]]:
        state, metrics = jax.lax.scan(update, state, None, length=cfg.eval_every)
        key, eval_key = jax.random.split(state.key)
        returns = evaluate(state.learner.params["policy"], eval_key)
        metrics["eval_returns"] = returns
        return state._replace(key=key), metrics

    return CompiledTrainer(
        # init runs once: optimising its code costs more compile time (~0.6 s) than it saves.
        init=jax.jit(jax.vmap(init), compiler_options=RUN_ONCE),
        chunk=jax.jit(jax.vmap(chunk_one), donate_argnums=0),
        evaluate=evaluate,
        networks=networks,
        steps_per_update=steps_per_update,
        num_updates=num_updates,
    )


def seed_keys(cfg: Config) -> jax.Array:
    """One PRNG key per seed: ``PRNGKey(seed + i)`` for ``i < num_seeds``."""
    return jax.vmap(jax.random.PRNGKey)(jnp.arange(cfg.seed, cfg.seed + cfg.num_seeds))


def shard_seeds(tree: Any) -> Any:
    """Place the leading (seed) axis across all devices when it divides evenly; else leave as is.

    jit then partitions the whole vmapped program along that axis (GSPMD); each device trains its
    own seeds, so results equal the unsharded run's. On several hosts call
    ``jax.distributed.initialize()`` first: ``jax.devices()`` then spans all of them.
    """
    devices = jax.devices()
    leading = jax.tree.leaves(tree)[0].shape[0]
    if len(devices) < 2 or leading % len(devices):
        return tree
    mesh = Mesh(np.asarray(devices), ("seed",))
    sharding = NamedSharding(mesh, PartitionSpec("seed"))
    return jax.device_put(tree, sharding)


def solved(eval_returns: np.ndarray, threshold: float | None) -> np.ndarray:
    """The solve check per seed: mean evaluation return at least ``threshold``."""
    if threshold is None:
        return np.zeros(eval_returns.shape[:-1], bool)
    return eval_returns.mean(axis=-1) >= threshold


def flatten_state(state: Any) -> dict[str, np.ndarray]:
    """A pytree's leaves as ``{"0": array, "1": ...}``: plain arrays, no structure, no code."""
    return {str(i): np.asarray(x) for i, x in enumerate(jax.tree.leaves(jax.device_get(state)))}


def restore_state(template: Any, leaves: dict[str, Any]) -> Any:
    """Put saved leaves into ``template``'s structure; ValueError if they do not fit.

    Leaves that are NumPy arrays in the template stay NumPy (full precision, on the host).
    """
    flat, treedef = jax.tree.flatten(template)
    if len(leaves) != len(flat):
        raise ValueError(f"checkpoint holds {len(leaves)} arrays, this config needs {len(flat)}")
    restored = []
    for i, ref in enumerate(flat):
        x = np.asarray(leaves.get(str(i)))
        if x.shape != ref.shape or x.dtype != ref.dtype:
            raise ValueError(f"checkpoint array {i} is {x.dtype}{list(x.shape)}, "
                             f"expected {ref.dtype}{list(ref.shape)}")  # fmt: skip
        restored.append(x if isinstance(ref, np.ndarray) else jnp.asarray(x))
    return jax.tree.unflatten(treedef, restored)


def train_compiled(
    cfg: Config, threshold: float | None, resume: dict[str, Any] | None = None
) -> Iterator[dict[str, Any]]:
    """Run the compiled trainer chunk by chunk, yielding events.

    ``resume`` is a checkpoint (``{"chunk": n, "state": leaves}``, see :func:`flatten_state`):
    training continues after chunk ``n`` from exactly that state, so a resumed run ends with the
    parameters an uninterrupted one would have had. Each evaluation event carries a
    ``checkpoint`` to save.

    Every trainer yields the same events: ``{"train": [rows]}``, ``{"eval": [rows], "params": ...}``
    (one row per seed and update or evaluation; the parameters evaluated, leading axis = seed for
    this trainer) and finally ``{"done": {"params": ..., ...}}``.
    """
    env = make_jax_env(cfg.env_id)
    trainer = make_compiled_trainer(cfg, env)
    start = time.perf_counter()
    state = trainer.init(seed_keys(cfg))
    first_chunk = 0
    if resume is not None:
        try:
            state = restore_state(state, resume["state"])
        except ValueError as e:
            raise ConfigError(f"the checkpoint does not fit this run's config: {e}") from None
        first_chunk = int(resume["chunk"])
    state = shard_seeds(state)
    seeds = list(range(cfg.seed, cfg.seed + cfg.num_seeds))
    solved_at: dict[str, dict[str, Any]] = dict((resume or {}).get("solved_at", {}))
    for chunk in range(first_chunk, trainer.num_updates // cfg.eval_every):
        state, metrics = trainer.chunk(state)
        metrics = jax.device_get(metrics)
        wall = time.perf_counter() - start
        eval_returns = np.asarray(metrics.pop("eval_returns"))  # [S, E]
        updates = int(state.learner.step[0])
        rows = []
        for i, seed in enumerate(seeds):
            for u in range(cfg.eval_every):
                row = {k: v[i, u] for k, v in metrics.items()}
                row.update(seed=seed, update=updates - cfg.eval_every + u + 1, wall_time=wall)
                rows.append(row)
        yield {"train": rows}
        is_solved = solved(eval_returns, threshold)
        evals = []
        for i, seed in enumerate(seeds):
            r = eval_returns[i]
            row = {"seed": seed, "update": updates, "env_steps": int(metrics["env_steps"][i, -1]),
                   "eval_mean": r.mean(), "eval_std": r.std(), "eval_min": r.min(),
                   "eval_max": r.max(), "eval_episodes": r.size, "solved": bool(is_solved[i]),
                   "wall_time": wall}  # fmt: skip
            evals.append(row)
            if is_solved[i] and str(seed) not in solved_at:
                solved_at[str(seed)] = row
        # Host copies: the next chunk donates (frees) the device buffers.
        host_state = jax.device_get(state)
        checkpoint = {"chunk": chunk + 1, "state": flatten_state(host_state),
                      "solved_at": {str(k): v for k, v in solved_at.items()}}  # fmt: skip
        yield {"eval": evals, "params": host_state.learner.params, "checkpoint": checkpoint}
        if cfg.stop_when_solved and len(solved_at) == len(seeds):
            break
    params = jax.device_get(state.learner.params)
    yield {"done": {"params": params, "env_steps": int(np.asarray(state.env_steps)[0]),
                    "solved_at": solved_at, "stacked": True}}  # fmt: skip
