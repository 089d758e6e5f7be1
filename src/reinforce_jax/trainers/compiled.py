"""The compiled trainer: rollout, returns, loss, gradients and optax update in one XLA program.

Shaped after PureJaxRL's ``make_train``: :func:`make_compiled_program` returns pure functions;
``chunk(state)`` runs ``cfg.eval_every`` updates with ``lax.scan`` and then evaluates, all inside one
``jax.jit``. Python runs only between chunks (logging, checkpoints, the solve check). Seeds are a
leading ``vmap`` axis; with several devices that axis is sharded (``NamedSharding``), so the same
code runs on one CPU or several GPUs. With several processes (``jax.distributed``) each trains its
share of the seeds (:mod:`~reinforce_jax.trainers.distributed`) and every process sees all rows.
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

from reinforce_jax.config import Config
from reinforce_jax.envs.functional import FunctionalEnv, spec_of
from reinforce_jax.envs.spec import EnvSpec
from reinforce_jax.errors import ConfigError
from reinforce_jax.evaluate import eval_row, make_jax_evaluate
from reinforce_jax.learner import HYPERPARAMETERS, LearnerState
from reinforce_jax.networks import update_obs_stats
from reinforce_jax.rollout.functional import make_jax_rollout
from reinforce_jax.rollout.trajectory import episode_stats, to_batch
from reinforce_jax.trainers.common import Agent, build_agent, init_learner
from reinforce_jax.trainers.distributed import check_split, seed_split
from reinforce_jax.trainers.events import (
    Checkpoint,
    Done,
    EvalRows,
    Event,
    TrainRows,
    check_solved_at,
    flatten_state,
    restore_state,
)
from reinforce_jax.trainers.export_cache import cached_jit, program_key

# XLA options for programs that run once, where compile time is all that matters.
RUN_ONCE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


# Settings that can be traced values, so that one program trains many configurations (a sweep).
TRACEABLE = (*HYPERPARAMETERS, "gamma")


class RunnerState(NamedTuple):
    learner: LearnerState
    key: jax.Array  # the run's PRNG key, split once per update and per evaluation
    env_steps: jax.Array  # environment steps taken so far (per seed)
    hyper: dict[str, jax.Array] = {}  # traced settings (TRACEABLE names); empty in a plain run


class CompiledProgram(NamedTuple):
    init: Callable[..., RunnerState]  # (keys[S], hyper {name: [S]}) -> state, jitted, over seeds
    chunk: Callable[[RunnerState], tuple[RunnerState, dict[str, Any]]]  # jitted, over seeds
    evaluate: Callable[..., jax.Array]  # (params, key) -> returns[eval_episodes]
    agent: Agent
    steps_per_update: int
    num_updates: int  # total, rounded up to whole chunks


def num_updates_for(cfg: Config) -> int:
    """Updates needed to spend ``total_steps``, rounded up to whole chunks of ``eval_every``."""
    per_update = cfg.num_envs * cfg.rollout_steps
    chunks = max(1, math.ceil(cfg.total_steps / (per_update * cfg.eval_every)))
    return chunks * cfg.eval_every


def make_compiled_program(
    cfg: Config, env: FunctionalEnv, traced: tuple[str, ...] = ()
) -> CompiledProgram:
    """Pure functions for the compiled path of ``cfg`` on the JAX environment ``env``.

    ``traced`` names settings (of :data:`TRACEABLE`) that ``init`` takes as values per seed
    instead of reading them from ``cfg``: one program then trains every configuration that
    differs only in them. A plain run traces none (constants compile to the published numbers).
    """
    unknown = set(traced) - set(TRACEABLE)
    if unknown:
        raise ValueError(f"cannot trace {sorted(unknown)}; traceable: {TRACEABLE}")
    num_updates = num_updates_for(cfg)
    optimizer_traced = bool({"learning_rate", "max_grad_norm"} & set(traced))
    agent = build_agent(cfg, spec_of(env), num_updates, cfg.num_envs * cfg.rollout_steps,
                        traced=optimizer_traced)  # fmt: skip
    rollout = make_jax_rollout(env, agent.act, cfg.num_envs, cfg.rollout_steps, cfg.gamma,
                               agent.value)  # fmt: skip
    evaluate = make_jax_evaluate(env, agent.eval_act, cfg.eval_episodes)
    steps_per_update = cfg.num_envs * cfg.rollout_steps

    def init(key: jax.Array, hyper: dict[str, jax.Array] | None = None) -> RunnerState:
        hyper = dict(hyper or {})
        if set(hyper) != set(traced):
            raise ValueError(f"init needs values for exactly {traced}, got {sorted(hyper)}")
        key, init_key = jax.random.split(key)
        hyper = {k: jnp.asarray(v, jnp.float32) for k, v in hyper.items()}
        return RunnerState(init_learner(agent, init_key), key, jnp.zeros((), jnp.int32), hyper)

    def update(state: RunnerState, _: Any) -> tuple[RunnerState, dict[str, jax.Array]]:
        key, rollout_key = jax.random.split(state.key)
        gamma = state.hyper.get("gamma", cfg.gamma)
        traj = rollout(state.learner.params, rollout_key, gamma)
        learner = state.learner
        if cfg.obs_norm:  # statistics follow the experience before the update learns from it
            stats = update_obs_stats(learner.params["obs_norm"], traj.obs)
            learner = learner._replace(params={**learner.params, "obs_norm": stats})
        learner_hyper = {k: v for k, v in state.hyper.items() if k in HYPERPARAMETERS}
        learner, metrics = agent.learner.update(learner, to_batch(traj, gamma), learner_hyper)
        metrics.update(episode_stats(traj))
        env_steps = state.env_steps + steps_per_update
        metrics["env_steps"] = env_steps
        return RunnerState(learner, key, env_steps, state.hyper), metrics

    def chunk_one(state: RunnerState) -> tuple[RunnerState, dict[str, Any]]:
        state, metrics = jax.lax.scan(update, state, None, length=cfg.eval_every)
        key, eval_key = jax.random.split(state.key)
        metrics["eval_returns"] = evaluate(state.learner.params, eval_key)
        return state._replace(key=key), metrics

    # The export cache's key: the settings that shape both programs, and which are traced.
    key = {**program_key(cfg, env), "traced": list(traced)}
    chunk = cached_jit(jax.vmap(chunk_one), "chunk", key, donate_argnums=0)
    return CompiledProgram(
        # init runs once: optimising its code costs more compile time (~0.6 s) than it saves.
        init=cached_jit(jax.vmap(init), "init", key, compiler_options=RUN_ONCE, feeds=chunk),
        chunk=chunk,
        evaluate=evaluate,
        agent=agent,
        steps_per_update=steps_per_update,
        num_updates=num_updates,
    )


def seed_keys(cfg: Config) -> jax.Array:
    """One PRNG key per seed: ``PRNGKey(seed + i)`` for ``i < num_seeds``."""
    return jax.vmap(jax.random.PRNGKey)(jnp.arange(cfg.seed, cfg.seed + cfg.num_seeds))


def shard_seeds(tree: Any) -> Any:
    """Place the leading (seed) axis across this process's devices when it divides evenly; else
    leave as is.

    jit then partitions the whole vmapped program along that axis (GSPMD); each device trains its
    own seeds, so results equal the unsharded run's. With several processes each shards only its
    own share of the seeds (:func:`~reinforce_jax.trainers.distributed.seed_split`).
    """
    devices = jax.local_devices()
    leading = jax.tree.leaves(tree)[0].shape[0]
    if len(devices) < 2 or leading % len(devices):
        return tree
    mesh = Mesh(np.asarray(devices), ("seed",))
    sharding = NamedSharding(mesh, PartitionSpec("seed"))
    return jax.device_put(tree, sharding)


def check(cfg: Config, spec: EnvSpec) -> None:
    """Refuse what the compiled trainer cannot run (before anything is written)."""
    if spec.env_args:
        raise ConfigError(
            "the compiled trainer's JAX-native environments take no arguments "
            f"(got {spec.env_args}); the host trainer can use them"
        )
    if not spec.has_jax:
        raise ConfigError(
            f"{spec.env_id} has no JAX implementation, so the compiled trainer cannot run it; "
            "the host trainer can"
        )
    check_split(cfg.num_seeds, jax.process_count())


class CompiledTrainer:
    """Runs :func:`make_compiled_program` chunk by chunk, yielding events."""

    name = "compiled"
    unit = "updates"
    log_style = "batched"
    curve_window = 5

    startup_note = "compiling the training program (seconds on first use; cached afterwards)"
    budget_rule = "whole chunks of eval_every updates of num_envs x rollout_steps steps"

    def __init__(
        self,
        cfg: Config,
        spec: EnvSpec,
        env: FunctionalEnv,
        *,
        rows: list[dict[str, Any]] | None = None,
        hyper: dict[str, list[float]] | None = None,
    ):
        """``rows``: one label per trained row (``{"seed": s}``, plus ``"config": c`` in a sweep;
        default: ``cfg``'s seeds); ``hyper``: per-row values of traced settings (a sweep)."""
        check(cfg, spec)
        self.cfg, self.spec = cfg, spec
        self.rows = rows or [{"seed": s} for s in range(cfg.seed, cfg.seed + cfg.num_seeds)]
        self.hyper = {k: list(v) for k, v in (hyper or {}).items()}
        if any(len(v) != len(self.rows) for v in self.hyper.values()):
            raise ValueError("hyper needs one value per row")
        self.program = make_compiled_program(cfg, env, tuple(sorted(self.hyper)))
        self.total = self.program.num_updates
        self.env_steps_budget = self.total * self.program.steps_per_update

    def check_resume(self, resume: Checkpoint) -> None:
        """Refuse a checkpoint whose bookkeeping this run cannot continue from."""
        chunks = self.total // self.cfg.eval_every
        if not isinstance(resume.evaluations, int) or not 0 <= resume.evaluations <= chunks:
            raise ConfigError(f"the checkpoint's position ({resume.evaluations!r} evaluations) "
                              f"is outside this run's 0..{chunks}")  # fmt: skip
        check_solved_at(resume.meta.get("solved_at", {}))

    def run(self, resume: Checkpoint | None = None) -> Iterator[Event]:
        """Train; ``resume`` continues exactly from a checkpoint this trainer yielded.

        A resumed run ends with the parameters an uninterrupted one would have had.
        """
        cfg, program = self.cfg, self.program
        threshold = self.spec.solve_threshold
        start = time.perf_counter()
        split = seed_split(len(self.rows))  # this process's rows (all, in a single process)
        keys = jax.vmap(jax.random.PRNGKey)(jnp.asarray([r["seed"] for r in self.rows]))
        hyper = {k: jnp.asarray(v, jnp.float32) for k, v in self.hyper.items()}
        state = program.init(split.take(keys), split.take(hyper))
        first_chunk = 0
        solved_at: dict[str, dict[str, Any]] = {}
        if resume is not None:
            state = restore_state(state, split.take(resume.state))
            first_chunk = resume.evaluations
            solved_at = dict(resume.meta.get("solved_at", {}))
        state = shard_seeds(state)
        labels = self.rows
        all_solved = lambda: cfg.stop_when_solved and len(solved_at) == len(labels)  # noqa: E731
        stop_reason = f"the budget of {self.env_steps_budget:,} env steps per seed is spent"
        # A run killed after its last checkpoint but before it finished must not train on.
        chunks = (
            range(first_chunk, program.num_updates // cfg.eval_every) if not all_solved() else ()
        )
        for chunk in chunks:
            state, metrics = program.chunk(state)
            metrics = split.gather(metrics)  # every seed's, on every process
            wall = time.perf_counter() - start
            eval_returns = np.asarray(metrics.pop("eval_returns"))  # [S, E]
            updates = int(state.learner.step[0])
            per_update = program.steps_per_update
            metrics.pop("env_steps")  # int32 on the device: counted here in Python ints instead
            rows = []
            for i, label in enumerate(labels):
                for u in range(cfg.eval_every):
                    row = {k: v[i, u] for k, v in metrics.items()}
                    update = updates - cfg.eval_every + u + 1
                    row.update(label, update=update, env_steps=update * per_update,
                               wall_time=wall)  # fmt: skip
                    rows.append(row)
            yield TrainRows(rows)
            evals = []
            for i, label in enumerate(labels):
                row = eval_row(eval_returns[i], threshold, **label, update=updates,
                               env_steps=updates * per_update, wall_time=wall)  # fmt: skip
                evals.append(row)
                key = row_key(label)
                if row["solved"] and key not in solved_at:
                    solved_at[key] = row
            # Host copies: the next chunk donates (frees) the device buffers.
            host_state = split.gather(state)
            yield EvalRows(evals, host_state.learner.params)
            yield Checkpoint(chunk + 1, flatten_state(host_state), {"solved_at": solved_at})
            if all_solved():
                break
        if all_solved():
            stop_reason = "every seed met the solve check (stop_when_solved)"
        params = split.gather(state.learner.params)
        env_steps = int(np.asarray(state.learner.step).reshape(-1)[0]) * program.steps_per_update
        yield Done(params, env_steps, solved_at, stop_reason=stop_reason)


def row_key(label: dict[str, Any]) -> str:
    """A row's key in ``solved_at``: its seed (``"3"``), or ``"config:seed"`` in a sweep."""
    return f"{label['config']}:{label['seed']}" if "config" in label else str(label["seed"])


def build(cfg: Config, spec: EnvSpec) -> CompiledTrainer:
    from reinforce_jax.envs.registry import make_jax_env

    check(cfg, spec)
    return CompiledTrainer(cfg, spec, make_jax_env(spec.env_id))
