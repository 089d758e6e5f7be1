r"""The host trainer: any vector environment stepped from Python, the one learner jitted.

Any gymnasium environment we can act in trains here. A
:class:`~reinforce_jax.rollout.vectorized.HostRollout` steps a
:class:`~reinforce_jax.envs.vector.VectorEnv` (gymnasium's ``SyncVectorEnv`` by default) with the
jitted ``act``; the update is the very learner of the compiled path fed by the same returns maths
(:class:`Rollout`, :func:`to_batch`). Episodes cut by a window are carried over and learned from
where they end (:class:`~reinforce_jax.rollout.vectorized.EpisodeAssembler`), or, with
``return_lambda`` < 1, every window is learned whole from TD(lambda) returns bootstrapped by
:math:`V` (:func:`to_lambda_batch`); time-limit truncation bootstraps from :math:`V` of the final
observation when the baseline is learned.

Observation normalisation (``cfg.obs_norm``) lives in the parameters (``params["obs_norm"]``): the
statistics follow each window before the update that learns from it.

Seeding: every random number derives from ``cfg.seed`` (environment seeds through
``numpy.random.SeedSequence``, JAX keys from ``PRNGKey(cfg.seed)``), so a run repeats exactly.
Evaluation episode ``k`` resets with seed ``base + k``: greedy evaluation of fixed parameters gives
fixed returns whatever the number of evaluation environments.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from reinforce_jax.config import Config
from reinforce_jax.envs.spec import EnvSpec
from reinforce_jax.envs.vector import VectorEnv, make_vector_env
from reinforce_jax.errors import ConfigError
from reinforce_jax.evaluate import HostEvaluator, eval_row
from reinforce_jax.learner import LearnerState
from reinforce_jax.networks import update_obs_stats, value_output
from reinforce_jax.rollout.trajectory import Rollout, to_batch, to_lambda_batch
from reinforce_jax.rollout.vectorized import EpisodeAssembler, HostRollout
from reinforce_jax.trainers.common import build_agent, init_learner
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
    stack_seed,
)


def make_host_update(learner_update: Callable, gamma: float, lambda_: float = 1.0) -> Callable:
    """``update(state, obs, actions, rewards, ends[, next_values])`` on ``[T, N]`` arrays, jitted.

    The arrays form a :class:`Rollout`. With ``lambda_`` = 1 :func:`to_batch` gives reward-to-go
    and the completeness mask (steps of episodes that do not end inside the arrays, and padding,
    weigh 0); below 1 the arrays are one window learned whole from TD(lambda) returns
    (:func:`to_lambda_batch`, with ``next_values`` :math:`V(s_{t+1})`), nothing carried.
    """

    def update(state: LearnerState, obs, actions, rewards, ends, next_values=None):
        zeros = jnp.zeros(rewards.shape, jnp.float32)
        rollout = Rollout(jnp.asarray(obs, jnp.float32), actions, rewards, ends, zeros, zeros)
        if lambda_ < 1.0:
            batch = to_lambda_batch(rollout, next_values, gamma, lambda_)
        else:
            batch = to_batch(rollout, gamma)
        state, metrics = learner_update(state, batch)
        metrics["learn_steps"] = jnp.sum(batch.mask)
        return state, metrics

    return jax.jit(update, donate_argnums=0)


def _seeds(seed: int) -> tuple[int, int]:
    """Training-environment seed and evaluation seed base, both derived from ``seed``."""
    train, evaluation = np.random.SeedSequence(seed).generate_state(2)
    return int(train) % 2**30, int(evaluation) % 2**30


def num_host_updates(cfg: Config) -> int:
    """Updates of a host run: ``total_steps // (num_envs * rollout_steps)``, at least one."""
    return max(1, cfg.total_steps // (cfg.num_envs * cfg.rollout_steps))


def check(cfg: Config, spec: EnvSpec) -> None:
    """Refuse what the host trainer cannot run (before anything is written)."""
    if cfg.num_seeds != 1:
        raise ConfigError(
            f"the host trainer runs one seed at a time (num_seeds = 1), got {cfg.num_seeds}"
        )


class HostTrainer:
    """Train ``cfg`` on a vector environment, yielding the events every trainer yields.

    ``train`` rows (one per update) add ``sps`` (training steps per second of the update; the
    session replaces it with the run's rate, evaluation included), ``learn_steps`` (steps with a complete return in the
    update's batch), ``queued_steps`` (complete episodes' steps waiting for room), ``rollout_time``
    and ``learn_time`` (seconds). ``total_steps`` bounds the training steps:
    :func:`num_host_updates` updates, evaluated every ``eval_every`` updates and after the last one.
    A resumed run restores learner, keys and counters exactly, but vector environments cannot save
    their state: it starts fresh episodes (seeds derived from the run's seed and the update).
    """

    name = "host"
    budget_rule = "whole updates of num_envs x rollout_steps steps"
    unit = "updates"
    log_style = "batched"
    curve_window = 5

    def __init__(
        self,
        cfg: Config,
        spec: EnvSpec,
        make_envs: Callable[..., VectorEnv] = make_vector_env,
    ):
        check(cfg, spec)
        self.cfg, self.spec, self.make_envs = cfg, spec, make_envs
        self.total = num_host_updates(cfg)
        self.env_steps_budget = self.total * cfg.num_envs * cfg.rollout_steps
        self.agent = build_agent(cfg, spec, self.total, cfg.num_envs * cfg.rollout_steps)

    def check_resume(self, resume: Checkpoint) -> None:
        """Refuse a checkpoint whose bookkeeping this run cannot continue from."""
        update = check_counter(resume.meta, "update", 1, self.total)
        check_counter(resume.meta, "env_steps", 0)
        check_counter({"evaluations": resume.evaluations}, "evaluations", 1, update)
        check_solved_at(resume.meta.get("solved_at", {}))

    def run(self, resume: Checkpoint | None = None) -> Iterator[Event]:
        cfg, spec, agent = self.cfg, self.spec, self.agent
        per_update = cfg.num_envs * cfg.rollout_steps
        bootstrapped = cfg.return_lambda < 1.0  # TD(lambda): each window learned whole
        update = make_host_update(agent.learner.update, cfg.gamma, cfg.return_lambda)
        if bootstrapped:
            values = jax.jit(functools.partial(value_output, agent.networks))
        key = jax.random.PRNGKey(cfg.seed)
        key, init_key, act_key, eval_key = jax.random.split(key, 4)
        state = init_learner(agent, init_key)
        train_seed, eval_seed = _seeds(cfg.seed)
        limit = spec.max_episode_steps
        carry_cap = (limit - 1) if limit else 3 * cfg.rollout_steps
        assembler = EpisodeAssembler(cfg.num_envs, cfg.rollout_steps, carry_cap, spec.obs_shape,
                                     action_shape=agent.dist.action_shape,
                                     action_dtype=np.dtype(agent.dist.action_dtype).type)  # fmt: skip
        env_steps, evaluations, first = 0, 0, 1
        solved_at: dict[str, dict[str, Any]] = {}
        if resume is not None:
            template = {"learner": state, "keys": (act_key, eval_key)}
            tree = restore_state(template, resume.state)
            state, (act_key, eval_key) = tree["learner"], tree["keys"]
            first, env_steps = int(resume.meta["update"]) + 1, int(resume.meta["env_steps"])
            evaluations, solved_at = resume.evaluations, dict(resume.meta.get("solved_at", {}))
            train_seed = (train_seed + first) % 2**30
        envs = self.make_envs(spec.env_id, cfg.num_envs, env_args=spec.env_args)
        rollout = HostRollout(envs, agent.act,
                              cfg.rollout_steps, cfg.gamma, train_seed, agent.value)  # fmt: skip
        evaluator = HostEvaluator(spec.env_id, agent.eval_act, cfg.eval_episodes,
                                  env_args=spec.env_args)  # fmt: skip
        start = time.perf_counter()
        returns: list[float] = []
        lengths: list[int] = []
        solved = cfg.stop_when_solved and str(cfg.seed) in solved_at
        try:
            # A run killed after its last checkpoint but before it finished must not train on.
            for u in range(first, self.total + 1) if not solved else ():
                t0 = time.perf_counter()
                window, act_key = rollout.collect(state.params, act_key)
                if bootstrapped:  # V(s_{t+1}) under the parameters that acted, as envpool's
                    nxt = np.concatenate([window.obs[1:], rollout.obs[None]], 0)
                    next_values = values(state.params, nxt.reshape((-1, *nxt.shape[2:])))
                    next_values = jnp.reshape(next_values, window.rewards.shape)
                t1 = time.perf_counter()
                if cfg.obs_norm:  # statistics follow the window before the update learns from it
                    stats = update_obs_stats(state.params["obs_norm"], window.obs)
                    state = state._replace(params={**state.params, "obs_norm": stats})
                if bootstrapped:
                    batch = (window.obs, window.actions, window.rewards, window.ends, next_values)
                else:
                    batch = assembler.assemble(window.obs, window.actions, window.rewards,
                                               window.ends)  # fmt: skip
                state, metrics = update(state, *batch)
                metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
                t2 = time.perf_counter()
                env_steps += per_update
                returns += window.episode_returns
                lengths += window.episode_lengths
                row = {
                    "seed": cfg.seed, "update": u, "env_steps": env_steps,
                    "episode_return": float(np.mean(returns)) if returns else float("nan"),
                    "episode_length": float(np.mean(lengths)) if lengths else float("nan"),
                    "episodes": len(returns), **metrics, "wall_time": t2 - start,
                    "sps": per_update / (t2 - t0), "rollout_time": t1 - t0, "learn_time": t2 - t1, "queued_steps": assembler.queued,
                }  # fmt: skip
                returns, lengths = [], []
                yield TrainRows([row])
                if u % cfg.eval_every and u != self.total:
                    continue
                base = eval_seed + evaluations * cfg.eval_episodes
                eval_key, k = jax.random.split(eval_key)
                r, _ = evaluator.run(state.params, base, k)
                evaluations += 1
                ev = eval_row(r, spec.solve_threshold, seed=cfg.seed, update=u,
                              env_steps=env_steps, wall_time=time.perf_counter() - start)  # fmt: skip
                if ev["solved"] and str(cfg.seed) not in solved_at:
                    solved_at[str(cfg.seed)] = ev
                params = jax.device_get(state.params)
                yield EvalRows([ev], stack_seed(params))
                meta = {"update": u, "env_steps": env_steps, "solved_at": solved_at}
                saved = {"learner": state, "keys": (act_key, eval_key)}
                yield Checkpoint(evaluations, flatten_state(saved), meta)
                if cfg.stop_when_solved and ev["solved"]:
                    solved = True
                    break
        finally:
            rollout.close()
            evaluator.close()
        reason = ("the seed met the solve check (stop_when_solved)" if solved
                  else f"the budget of {self.env_steps_budget:,} env steps is spent")  # fmt: skip
        yield Done(stack_seed(state.params), env_steps, solved_at,
                   {"dropped_steps": assembler.dropped}, stop_reason=reason)  # fmt: skip


def build(cfg: Config, spec: EnvSpec) -> HostTrainer:
    return HostTrainer(cfg, spec)
