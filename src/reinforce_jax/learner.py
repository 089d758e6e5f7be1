"""The learner: REINFORCE loss, gradients and the optax update, shared by every trainer.

A batch is flat: ``obs [N, *obs_shape]``, ``actions [N]``, ``returns [N]`` (Monte-Carlo
reward-to-go) and ``mask [N]`` (1 where the step counts, 0 for padding or cut episodes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from reinforce_jax import math as rl
from reinforce_jax.config import Config
from reinforce_jax.policy import Networks


class Batch(NamedTuple):
    obs: jax.Array
    actions: jax.Array
    returns: jax.Array
    mask: jax.Array


class LearnerState(NamedTuple):
    params: Any  # {"policy": ..., "value": ... (baseline = value)}
    opt_state: Any
    step: jax.Array  # number of updates applied


class Learner(NamedTuple):
    init: Callable[[jax.Array, jax.Array], LearnerState]
    update: Callable[[LearnerState, Batch], tuple[LearnerState, dict[str, jax.Array]]]
    schedule: Callable[[jax.Array], jax.Array]


def make_optimizer(cfg: Config, num_updates: int) -> tuple[optax.GradientTransformation, Callable]:
    """Adam with the configured schedule, behind optional global-norm clipping."""
    if cfg.lr_schedule == "linear":
        schedule = optax.linear_schedule(cfg.learning_rate, 0.0, max(num_updates, 1))
    else:
        schedule = optax.constant_schedule(cfg.learning_rate)
    adam = optax.adam(schedule)
    if cfg.max_grad_norm > 0:
        return optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), adam), schedule
    return adam, schedule


def loss_fn(
    params: Any, batch: Batch, networks: Networks, cfg: Config
) -> tuple[jax.Array, dict[str, jax.Array]]:
    r"""Total loss :math:`L_{pg} - c_H H + c_V L_V` and its parts.

    The advantage is :math:`A = G - b` with :math:`b` = 0, the batch mean of :math:`G`, or the learned
    :math:`V(s)` (held fixed in :math:`L_{pg}`), optionally standardised over the batch.
    """
    chex.assert_rank([batch.actions, batch.returns, batch.mask], 1)
    mask = batch.mask
    logits = networks.policy.apply(params["policy"], batch.obs)
    advantages = batch.returns
    metrics: dict[str, jax.Array] = {}
    value_loss = jnp.zeros(())
    if cfg.baseline == "value":
        values = networks.value.apply(params["value"], batch.obs)
        value_loss = rl.masked_mean(jnp.square(batch.returns - values), mask)
        advantages = batch.returns - jax.lax.stop_gradient(values)
        metrics["value_loss"] = value_loss
    elif cfg.baseline == "mean":
        advantages = batch.returns - rl.masked_mean(batch.returns, mask)
    if cfg.normalize_advantages:
        advantages = rl.normalize(advantages, mask)
    pg_loss = rl.batched_policy_gradient_loss(batch.actions, logits, advantages, mask)
    ent = rl.masked_mean(rl.entropy(logits), mask)
    total = pg_loss - cfg.entropy_coef * ent + cfg.value_coef * value_loss
    metrics.update(policy_loss=pg_loss, entropy=ent, loss=total)
    return total, metrics


def make_learner(cfg: Config, networks: Networks, num_updates: int = 1) -> Learner:
    """Build ``init(key, example_obs)`` and the jittable ``update(state, batch)``."""
    optimizer, schedule = make_optimizer(cfg, num_updates)
    use_value = cfg.baseline == "value"
    if use_value and networks.value is None:
        raise ValueError("baseline='value' needs networks with a value network")

    def init(key: jax.Array, example_obs: jax.Array) -> LearnerState:
        pkey, vkey = jax.random.split(key)
        params = {"policy": networks.policy.init(pkey, example_obs)}
        if use_value:
            params["value"] = networks.value.init(vkey, example_obs)
        return LearnerState(params, optimizer.init(params), jnp.zeros((), jnp.int32))

    def update(state: LearnerState, batch: Batch) -> tuple[LearnerState, dict[str, jax.Array]]:
        grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params, batch, networks, cfg)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics["grad_norm"] = optax.global_norm(grads)
        metrics["learning_rate"] = schedule(state.step)
        return LearnerState(params, opt_state, state.step + 1), metrics

    return Learner(init, update, schedule)
