r"""The envpool trainer: envpool's C++ environments inside the compiled program.

Like the compiled trainer, one ``jax.jit`` program per chunk holds ``eval_every`` updates
(``lax.scan``: rollout, reward-to-go, loss, gradients, Adam) and the in-training evaluation; but the
environments are an `envpool <https://github.com/sail-sg/envpool>`_ pool stepped through its XLA
interface (:mod:`reinforce_jax.rollout.pool`), so any environment envpool has (LunarLander-v3)
trains at compiled speed. ``K`` seeds x ``N`` environments share one pool (envpool's call cannot
be ``vmap``-ped); the learner and the policy are ``vmap``-ped over the seeds.

**Evaluation.** Each evaluation runs ``eval_episodes`` fresh episodes per seed on a second pool
(greedy by default, reset from the host before the chunk), and stops when all have ended; at most
25 environments per seed play them (100 episodes: 4 each, dealt as the host evaluator deals them),
since envpool steps every environment until the slowest episode ends. It is
*gated*, since 100 episodes of a hovering lander cost as much as 100,000 training steps: every
chunk first runs a cheap pre-check (20 greedy episodes per seed on a third pool), and the full
evaluation runs only when some seed's pre-check mean reaches the threshold minus 15% (170 for
LunarLander's 200). The gate looks at the greedy policy itself, not at the sampled training
return: on LunarLander the two differ by hundreds either way (a sampled policy that lands at 200
while its greedy twin hovers near 0, and the reverse). The solve check itself is unchanged:
``eval_episodes`` greedy episodes with mean >= threshold. The last chunk always evaluates.
``reinforce evaluate`` re-judges any policy on gymnasium's own environments.

**Stopping at a solve.** With ``stop_when_solved`` a seed stops learning at its first solve and
keeps the parameters that passed, as with the compiled trainer (its environments still step: the
pool is shared); its pre-check no longer opens full evaluations for the others.

**Returns.** Monte-Carlo (``return_lambda`` = 1): steps of episodes cut by a window are carried
to the update where their episode ends. TD(lambda) (``return_lambda`` < 1, LunarLander-v3's
default): every window is learned whole, bootstrapped by the value the rollout computed
(:func:`~reinforce_jax.rollout.pool.learn_lambda_window`); nothing is carried.

**Small updates.** ``min_episodes`` (0 = off) scales an update's step by
``min(1, episodes / min_episodes)``, the episodes being those whose last step is in its batch.

**Sweeps.** ``rows`` label the ``K`` rows (``{"config": c, "seed": s}`` in a sweep) and ``hyper``
gives per-row values of the learner's settings (:data:`TRACEABLE`), taken as values by one
program as in the compiled trainer; ``gamma`` is not among them here (the returns are computed
with it as a constant).

**Resume.** envpool cannot save its environments' state: a resumed run restores learner, keys and
counters exactly and starts fresh episodes (the pool reseeded from the run's seed and the chunk),
like the host trainer; the episodes in flight and the carried steps at the checkpoint are lost.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from reinforce_jax.config import Config
from reinforce_jax.envs import envpool as pools
from reinforce_jax.envs import envpool_route as route
from reinforce_jax.envs.spec import EnvSpec
from reinforce_jax.errors import ConfigError
from reinforce_jax.evaluate import EVAL_ENVS, PRECHECK_EPISODES, eval_row
from reinforce_jax.learner import HYPERPARAMETERS, OPTIMIZER_HYPERPARAMETERS, LearnerState
from reinforce_jax.networks import update_obs_stats, value_output
from reinforce_jax.rollout.pool import (
    init_carry,
    learn_lambda_window,
    learn_window,
    make_pool_evaluate,
    make_pool_rollout,
    window_stats,
)
from reinforce_jax.trainers.common import (
    RUN_ONCE,
    build_agent,
    init_learner,
    loop_options,
    prng_keys,
    sweep_rows,
)
from reinforce_jax.trainers.events import (
    Checkpoint,
    Done,
    EvalRows,
    Event,
    TrainRows,
    check_counter,
    check_solved_at,
    flatten_state,
    restore_state,
    row_key,
)
from reinforce_jax.trainers.export_cache import CachedJit, cached_jit, program_key
from reinforce_jax.trainers.export_cache import directory as export_dir

# Settings a sweep may give each row as a value (the learner's; gamma is structural here).
TRACEABLE = HYPERPARAMETERS


class PoolState(NamedTuple):
    learner: LearnerState  # leading seed axis
    key: jax.Array  # [K] keys


def num_updates_for(cfg: Config) -> int:
    per_update = cfg.num_envs * cfg.rollout_steps
    chunks = max(1, math.ceil(cfg.total_steps / (per_update * cfg.eval_every)))
    return chunks * cfg.eval_every


def eval_gate(threshold: float | None) -> float:
    """Sampled training return a seed must reach in a chunk before its pre-check runs: none by
    default (the sampled return does not predict the greedy one); a caller may set one."""
    return -math.inf


def precheck_gate(threshold: float | None) -> float:
    """Mean over the pre-check's episodes a seed must reach before the full evaluation runs."""
    if threshold is None:
        return -math.inf
    return threshold - 0.15 * abs(threshold)


def step_scale(counts: dict[str, jax.Array], min_episodes: int) -> jax.Array:
    """Fraction of its optimiser step each seed's update takes: 0 where no step was learned, else
    ``min(1, learn_episodes / min_episodes)`` (1 when ``min_episodes`` is 0). An update learned
    from one or two finished episodes is a noisy estimate of the policy gradient, yet Adam with
    standardised advantages would give it a full step; this shrinks it in proportion."""
    has = counts["learn_steps"] > 0
    if not min_episodes:
        return has.astype(jnp.float32)
    fraction = jnp.minimum(1.0, counts["learn_episodes"] / min_episodes)
    return jnp.where(has, fraction, 0.0).astype(jnp.float32)


def _seeds(seed: int, chunk: int) -> tuple[int, int]:
    """Training-pool and evaluation-pool seeds, from the run's seed and the chunk it starts at."""
    train, evaluation, pre = np.random.SeedSequence([seed, chunk]).generate_state(3)
    return int(train) % 2**30, int(evaluation) % 2**30, int(pre) % 2**30


def check(cfg: Config, spec: EnvSpec) -> None:
    pools.check(spec)
    if cfg.trainer not in ("envpool", "auto"):
        raise ConfigError(f"the envpool trainer cannot run trainer = {cfg.trainer!r}")
    if jax.process_count() > 1:  # here, not only in build_trainer: sweeps build this directly
        raise ConfigError("several processes need the compiled trainer; this run uses the "
                          "envpool trainer")  # fmt: skip


class PoolTrainer:
    """Runs the envpool chunk program, yielding the events every trainer yields."""

    name = "envpool"
    unit = "updates"
    log_style = "batched"
    curve_window = 5
    startup_note = "compiling the training program (seconds on first use; cached afterwards)"
    budget_rule = "whole chunks of eval_every updates of num_envs x rollout_steps steps"

    def __init__(self, cfg: Config, spec: EnvSpec, carry_steps: int | None = None,
                 gate: float | None = None, *, rows: list[dict[str, Any]] | None = None,
                 hyper: dict[str, list[float]] | None = None):  # fmt: skip
        """``rows``: one label per row (``{"seed": s}``, plus ``"config": c`` in a sweep;
        default: ``cfg``'s seeds), as many as ``cfg.num_seeds``; ``hyper``: per-row values of
        :data:`TRACEABLE` settings (a sweep)."""
        check(cfg, spec)
        self.cfg, self.spec = cfg, spec
        self.rows, self.hyper = sweep_rows(cfg, rows, hyper, TRACEABLE)
        if len(self.rows) != cfg.num_seeds:  # one pool of num_seeds x num_envs environments
            raise ValueError(f"{len(self.rows)} rows for num_seeds = {cfg.num_seeds}")
        self.total = num_updates_for(cfg)
        self.steps_per_update = cfg.num_envs * cfg.rollout_steps
        self.env_steps_budget = self.total * self.steps_per_update
        optimizer_traced = bool(set(OPTIMIZER_HYPERPARAMETERS) & set(self.hyper))
        self.agent = build_agent(cfg, spec, self.total, self.steps_per_update,
                                 traced=optimizer_traced)  # fmt: skip
        limit = spec.max_episode_steps or 4 * cfg.rollout_steps
        # Carry up to one time limit of steps, in whole windows: every episode is learned whole.
        # TD(lambda) returns learn each window whole, bootstrapped: nothing to carry.
        self.bootstrapped = cfg.return_lambda < 1.0
        self.carry_steps = (
            0
            if self.bootstrapped
            else carry_steps
            if carry_steps is not None
            else cfg.rollout_steps * max(1, math.ceil((limit - 1) / cfg.rollout_steps))
        )
        self.batch_size = 2 * self.steps_per_update  # room for a burst of long episodes ending
        self.gate = eval_gate(spec.solve_threshold) if gate is None else gate
        self.pre_gate = precheck_gate(spec.solve_threshold)
        self.precheck_episodes = min(PRECHECK_EPISODES, cfg.eval_episodes)
        self.eval_envs = min(EVAL_ENVS, cfg.eval_episodes)  # per seed; 100 episodes: 4 each
        # Set once the chunk program is lowered (XLA then compiles it without the GIL): the
        # session's background imports wait for it instead of slowing the tracing.
        self.tracing_done = threading.Event()
        if (why := route.unavailable()) is not None:
            self.startup_note = ("compiling the training program (on every run: envpool's calls "
                                 f"cannot be cached here: {why})")  # fmt: skip

    def check_resume(self, resume: Checkpoint) -> None:
        chunks = self.total // self.cfg.eval_every
        check_counter({"evaluations": resume.evaluations}, "evaluations", 0, chunks)
        check_solved_at(resume.meta.get("solved_at", {}))

    def _program(self, step_fn, eval_step_fn, pre_step_fn, routed=False):
        cfg, agent = self.cfg, self.agent
        k = cfg.num_seeds
        value = agent.value
        if self.bootstrapped:  # TD(lambda) needs V(s_{t+1}) at every step, not only at truncations
            value = functools.partial(value_output, agent.networks)
        rollout = make_pool_rollout(step_fn, agent.act, k, cfg.rollout_steps, cfg.gamma,
                                    value, bootstrap=agent.value is not None)  # fmt: skip
        evaluate = make_pool_evaluate(eval_step_fn, agent.eval_act, k,
                                      self.spec.max_episode_steps or 10_000,
                                      cfg.eval_episodes)  # fmt: skip
        pre_evaluate = make_pool_evaluate(pre_step_fn, agent.eval_act, k,
                                          self.spec.max_episode_steps or 10_000)  # fmt: skip
        v_update = jax.vmap(agent.learner.update)
        hyper = {name: jnp.asarray(v, jnp.float32) for name, v in self.hyper.items()}
        gate, pre_gate = self.gate, self.pre_gate
        bootstrapped = self.bootstrapped

        def update(c, _):
            handle, state, carry, frozen = c
            per_seed = lambda x, like: x.reshape(x.shape + (1,) * (like.ndim - 1))  # noqa: E731
            split = jax.vmap(lambda key: jax.random.split(key))(state.key)
            key, rollout_keys = split[:, 0], split[:, 1]
            learner = state.learner
            handle, carry, steps, stats = rollout(handle, carry, learner.params, rollout_keys)
            if cfg.obs_norm:
                obs = steps.obs.reshape((-1, k, cfg.num_envs) + steps.obs.shape[2:])
                old = learner.params["obs_norm"]
                new = jax.vmap(update_obs_stats, in_axes=(0, 1))(old, obs)
                # A frozen seed keeps the statistics its policy passed with.
                new = jax.tree.map(lambda n, o: jnp.where(per_seed(frozen, n), o, n), new, old)
                learner = learner._replace(params={**learner.params, "obs_norm": new})
            if bootstrapped:
                buffer = carry.buffer
                batch, counts = learn_lambda_window(steps, cfg.gamma, cfg.return_lambda, k)
            else:
                buffer, batch, counts = learn_window(carry.buffer, steps, cfg.gamma, k,
                                                     self.batch_size)  # fmt: skip
            updated, metrics = (
                v_update(learner, batch, hyper) if hyper else v_update(learner, batch)
            )
            # A window in which no episode ended has nothing to learn: no optimiser step either;
            # nor does a seed frozen at its solve (stop_when_solved).
            has = (counts["learn_steps"] > 0) & ~frozen
            scale = jnp.where(frozen, 0.0, step_scale(counts, cfg.min_episodes))
            keep = lambda new, old: jnp.where(per_seed(has, new), new, old)  # noqa: E731
            if cfg.min_episodes:  # a fraction of the step: old + scale * (new - old)
                move = lambda new, old: old + per_seed(scale, new) * (new - old)  # noqa: E731
            else:
                move = keep
            learner = updated._replace(params=jax.tree.map(move, updated.params, learner.params),
                                       opt_state=jax.tree.map(keep, updated.opt_state,
                                                              learner.opt_state),
                                       value_opt_state=jax.tree.map(
                                           keep, updated.value_opt_state,
                                           learner.value_opt_state))  # fmt: skip
            metrics["step_scale"] = scale
            metrics.update(counts)
            metrics.update(window_stats(stats, k))
            out = (handle, PoolState(learner, key), carry._replace(buffer=buffer), frozen)
            return out, metrics

        def chunk(handles, state, carry, eval_obs, pre_obs, force, frozen):
            handle, eval_handle, pre_handle = handles
            (handle, state, carry, _), metrics = jax.lax.scan(
                update, (handle, state, carry, frozen), None, length=cfg.eval_every
            )
            split = jax.vmap(lambda key: jax.random.split(key, 3))(state.key)
            key, eval_keys, pre_keys = split[:, 0], split[:, 1], split[:, 2]
            params = state.learner.params
            recent = jnp.nanmean(metrics["episode_return"], axis=0)  # [K]
            nan = jnp.full((k, cfg.eval_episodes), jnp.nan, jnp.float32)
            pre_nan = jnp.full((k, self.precheck_episodes), jnp.nan, jnp.float32)

            # The pre-check runs unless the chunk is the last (which always evaluates) or no
            # seed's training return passed the gate; the full evaluation runs at the last chunk
            # or when some unfrozen seed's pre-check passed. One call site each: the evaluation
            # loops are compiled once.
            run_pre = ~force & jnp.any(recent >= gate)
            pre_handle, pre = jax.lax.cond(
                run_pre,
                lambda h: pre_evaluate(h, pre_obs, params, pre_keys),
                lambda h: (h, pre_nan),
                pre_handle,
            )
            passed = jnp.any((jnp.mean(pre, axis=1) >= pre_gate) & ~frozen)
            eval_handle, returns = jax.lax.cond(
                force | (run_pre & passed),
                lambda h: evaluate(h, eval_obs, params, eval_keys),
                lambda h: (h, nan),
                eval_handle,
            )
            metrics["eval_returns"] = returns
            metrics["precheck_returns"] = pre
            handles = (handle, eval_handle, pre_handle)
            return handles, state._replace(key=key), carry, metrics

        def init(keys):
            def one(key):
                key, init_key = jax.random.split(key)
                return PoolState(init_learner(agent, init_key), key)

            return jax.vmap(one)(keys)

        # XLA's older CPU emitters (loop_options): a first run compiles the chunk in 3.2 s
        # instead of 4.9 s (LunarLander), and it runs as fast, env stepping being most of it.
        # Later runs load it from JAX's cache: envpool_route keeps pool addresses out of it, so
        # the traced program is kept too (export_cache), unless envpool's own calls are used.
        key = self._program_key()
        if routed:
            chunk_fn = cached_jit(chunk, "pool-chunk", key, donate_argnums=(1, 2),
                                  compiler_options=loop_options(), custom_calls=[route.TARGET],
                                  signal=self.tracing_done)  # fmt: skip
        else:
            chunk_fn = jax.jit(chunk, donate_argnums=(1, 2), compiler_options=loop_options())
        # An event of its own: the background imports wait for the chunk's tracing, which follows.
        init_fn = cached_jit(init, "pool-init", key, compiler_options=RUN_ONCE,
                             signal=threading.Event())  # fmt: skip
        return init_fn, chunk_fn

    def _program_key(self) -> dict[str, Any]:
        """Everything the chunk program closes over that its arguments' types do not show."""
        return {**program_key(self.cfg, self.spec), "spec": repr(self.spec), "hyper": self.hyper,
                "envpool": pools.installed_version(),
                "pool": [self.gate, self.pre_gate, self.precheck_episodes, self.eval_envs,
                         self.carry_steps, self.batch_size, self.total]}  # fmt: skip

    def run(self, resume: Checkpoint | None = None) -> Iterator[Event]:
        cfg, spec, agent = self.cfg, self.spec, self.agent
        k, threshold = cfg.num_seeds, spec.solve_threshold
        start = time.perf_counter()
        first_chunk = 0
        solved_at: dict[str, dict[str, Any]] = {}
        labels = self.rows
        keys = prng_keys(r["seed"] for r in labels)
        if resume is not None:
            first_chunk = resume.evaluations
            solved_at = dict(resume.meta.get("solved_at", {}))
        train_seed, eval_seed, pre_seed = _seeds(cfg.seed, first_chunk)
        pool = pools.make_pool(spec, k * cfg.num_envs, train_seed)
        eval_pool = pools.make_pool(spec, k * self.eval_envs, eval_seed)
        pre_pool = pools.make_pool(spec, k * self.precheck_episodes, pre_seed)
        handle, _, _, step_fn = route.xla(pool)
        eval_handle, _, _, eval_step_fn = route.xla(eval_pool)
        pre_handle, _, _, pre_step_fn = route.xla(pre_pool)
        handles = (handle, eval_handle, pre_handle)
        routed = all(h.shape == (route.ROUTE_BYTES,) for h in handles)
        init, chunk_fn = self._program(step_fn, eval_step_fn, pre_step_fn, routed)
        state = init(keys)
        if resume is not None:
            state = restore_state(state, resume.state)
        obs, _ = pool.reset()
        carry = init_carry(obs, self.carry_steps, agent.dist.action_shape, agent.dist.action_dtype)
        all_solved = lambda: cfg.stop_when_solved and len(solved_at) == len(labels)  # noqa: E731
        # stop_when_solved: a seed stops learning at its first solve and keeps the parameters that
        # passed (its environments still step: the pool is shared), as the compiled trainer does.
        frozen = lambda: np.array([cfg.stop_when_solved and row_key(r) in solved_at  # noqa: E731
                                   for r in labels])  # fmt: skip
        stop_reason = f"the budget of {self.env_steps_budget:,} env steps per seed is spent"
        num_chunks = self.total // cfg.eval_every
        chunk = first_chunk
        dropped = np.zeros(k)
        program = None
        try:
            for chunk in range(first_chunk, num_chunks) if not all_solved() else ():
                eval_obs, _ = eval_pool.reset()
                pre_obs, _ = pre_pool.reset()
                force = chunk == num_chunks - 1
                # NumPy arguments: jnp.asarray would compile a small program for each at the start.
                args = (handles, state, carry, np.asarray(eval_obs, np.float32),
                        np.asarray(pre_obs, np.float32), np.asarray(force), frozen())  # fmt: skip
                if program is None and isinstance(chunk_fn, CachedJit) and export_dir():
                    program = chunk_fn  # loaded from, or exported to, the cache at its first call
                elif program is None:  # traced and lowered here, so that XLA compiles it GIL-free
                    lowered = chunk_fn.lower(*args)
                    self.tracing_done.set()
                    program = lowered.compile()
                handles, state, carry, metrics = program(*args)
                metrics = jax.device_get(metrics)
                wall = time.perf_counter() - start
                eval_returns = np.asarray(metrics.pop("eval_returns"))  # [K, E]
                pre_returns = np.asarray(metrics.pop("precheck_returns"))  # [K, P]
                dropped += metrics["dropped_steps"].sum(axis=0)
                updates = (chunk + 1) * cfg.eval_every
                rows = []
                for i, label in enumerate(labels):
                    for u in range(cfg.eval_every):
                        row = {name: float(v[u, i]) for name, v in metrics.items()}
                        update = updates - cfg.eval_every + u + 1
                        row.update(label, update=update,
                                   env_steps=update * self.steps_per_update, wall_time=wall)  # fmt: skip
                        if u == cfg.eval_every - 1 and np.isfinite(pre_returns[i]).all():
                            row["precheck_mean"] = float(pre_returns[i].mean())
                        rows.append(row)
                yield TrainRows(rows)
                host_state = jax.device_get(state)
                if np.isfinite(eval_returns).all():
                    evals = []
                    for i, label in enumerate(labels):
                        row = eval_row(eval_returns[i], threshold, **label, update=updates,
                                       env_steps=updates * self.steps_per_update, wall_time=wall)  # fmt: skip
                        evals.append(row)
                        if row["solved"] and row_key(label) not in solved_at:
                            solved_at[row_key(label)] = row
                    yield EvalRows(evals, host_state.learner.params)
                yield Checkpoint(chunk + 1, flatten_state(host_state), {"solved_at": solved_at})
                if all_solved():
                    break
        finally:
            self.tracing_done.set()
            for p in (pool, eval_pool, pre_pool):
                p.close()
        if all_solved():
            stop_reason = "every seed met the solve check (stop_when_solved)"
        params = jax.device_get(state.learner.params)
        env_steps = int(np.asarray(state.learner.step).reshape(-1)[0]) * self.steps_per_update
        yield Done(params, env_steps, solved_at, {"dropped_steps": float(dropped.sum())},
                   stop_reason=stop_reason)  # fmt: skip


def build(cfg: Config, spec: EnvSpec) -> Any:
    """The envpool trainer; where envpool is not installed (or not a tested release), the host
    trainer with a notice."""
    if (why := pools.unavailable()) is not None and pools.has_pool(spec):
        from reinforce_jax.trainers import host

        trainer = host.build(cfg.replace(trainer="host"), spec)
        trainer.startup_note = pools.fallback_notice(why)
        return trainer
    return PoolTrainer(cfg, spec)
