r"""The learner: REINFORCE loss, gradients and the optax update, shared by every trainer.

Shaped like an optax factory: :func:`make_learner` takes the networks, the action distribution,
an optax optimizer and the loss hyperparameters as explicit arguments and returns pure
``init``/``update`` functions. A batch is flat: ``obs [N, *obs_shape]``, ``actions [N, ...]``,
``returns [N]`` (Monte-Carlo reward-to-go) and ``mask [N]`` (1 where the step counts, 0 for
padding or cut episodes).

The total loss is :math:`L = L_{pg} - c_H H + c_V L_V` with :math:`L_{pg}` the masked mean of
:math:`-A \log \pi(a|s)`, the advantage :math:`A = G - b` for :math:`b` = 0, the batch mean of
:math:`G`, or the learned :math:`V(s)` (held fixed in :math:`L_{pg}`), optionally standardised.

``value_steps`` (baseline = value) adds that many gradient steps on :math:`c_V L_V` alone after the
joint step, on the same batch, with an optimizer state of their own (``LearnerState.value_opt_state``):
the policy's parameters and its part of the joint optimizer state are not touched by them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from reinforce_jax.core.distributions import Distribution
from reinforce_jax.core.losses import batched_policy_gradient_loss
from reinforce_jax.core.returns import masked_mean, normalize
from reinforce_jax.networks import Networks, policy_output, value_output
from reinforce_jax.rollout.trajectory import Batch

BASELINES = ("none", "mean", "value")

# Hyperparameters ``update`` accepts as traced values (a sweep vmaps over them). The optimizer's
# (learning_rate, max_grad_norm) reach it through ``optax.inject_hyperparams``'s state.
HYPERPARAMETERS = ("learning_rate", "max_grad_norm", "entropy_coef", "value_coef")
OPTIMIZER_HYPERPARAMETERS = ("learning_rate", "max_grad_norm")


class LearnerState(NamedTuple):
    params: Any  # {"policy", "value" (baseline = value), "obs_norm" (not trained)}
    opt_state: Any
    step: jax.Array  # number of updates applied
    # The value-only steps' optimizer state, over params["value"] (value_steps > 0); None (no
    # leaves: the state's arrays, and so its checkpoints, are as without it) when value_steps = 0.
    value_opt_state: Any = None


class Learner(NamedTuple):
    init: Callable[..., LearnerState]
    update: Callable[..., tuple[LearnerState, dict[str, jax.Array]]]  # (state, batch, hyper=None)


def make_learner(
    networks: Networks,
    dist: Distribution,
    optimizer: optax.GradientTransformation,
    *,
    baseline: str = "none",
    normalize_advantages: bool = False,
    entropy_coef: float = 0.0,
    value_coef: float = 0.5,
    schedule: Callable[[jax.Array], jax.Array] | None = None,
    entropy_schedule: Callable[[jax.Array], jax.Array] | None = None,
    value_steps: int = 0,
    value_optimizer: optax.GradientTransformation | None = None,
) -> Learner:
    """``init(key, example_obs, obs_stats=None)`` and the jittable ``update(state, batch, hyper)``.

    ``hyper`` (optional) maps names in :data:`HYPERPARAMETERS` to (traced) scalars that replace
    the values given here for this update: so one compiled program serves many settings.
    ``learning_rate`` and ``max_grad_norm`` need an optimizer built with
    ``optax.inject_hyperparams`` that exposes them. ``schedule(step)`` (or ``schedule(step, peak)``
    with a traced peak learning rate) is only reported as a metric. ``entropy_schedule(step)``,
    when given, multiplies the entropy coefficient (traced or not) at update ``step``.

    ``value_steps`` (baseline = value only): after the joint policy+value step, that many more
    steps on the value loss ``value_coef * L_V`` alone, on the same batch (the advantages of this
    update were taken before them). They use ``value_optimizer`` (default: ``optimizer``) with a
    state of their own over ``params["value"]``, so the policy and its optimizer state (Adam's
    moments would move it even with zero gradients) are untouched. That state counts value-only
    steps, ``value_steps`` per update: a count-based schedule in ``value_optimizer`` should span
    ``value_steps`` times the joint one's updates (``learner_from_config`` builds it so). Traced
    ``learning_rate`` and ``max_grad_norm`` apply to both optimizers.
    """
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    use_value = baseline == "value"
    if use_value and networks.value is None:
        raise ValueError("baseline='value' needs networks with a value network")
    if not isinstance(value_steps, int) or isinstance(value_steps, bool) or value_steps < 0:
        raise ValueError(f"value_steps must be a non-negative integer, got {value_steps!r}")
    if value_steps and not use_value:
        raise ValueError(f"value_steps needs baseline='value', got baseline={baseline!r}")
    value_opt = optimizer if value_optimizer is None else value_optimizer

    def value_fit(params: Any, batch: Batch) -> tuple[jax.Array, jax.Array]:
        """``V(s)`` on the batch and its masked squared error against the returns."""
        values = value_output(networks, params, batch.obs)
        return values, masked_mean(jnp.square(batch.returns - values), batch.mask)

    def loss_fn(
        trainable: Any, stats: Any, batch: Batch, entropy_coef: Any, value_coef: Any
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        chex.assert_rank([batch.returns, batch.mask], 1)
        params = trainable if stats is None else {**trainable, "obs_norm": stats}
        mask = batch.mask
        out = policy_output(networks, params, batch.obs)
        advantages = batch.returns
        metrics: dict[str, jax.Array] = {}
        value_loss = jnp.zeros(())
        if use_value:
            values, value_loss = value_fit(params, batch)
            advantages = batch.returns - jax.lax.stop_gradient(values)
            metrics["value_loss"] = value_loss
        elif baseline == "mean":
            advantages = batch.returns - masked_mean(batch.returns, mask)
        if normalize_advantages:
            advantages = normalize(advantages, mask)
        pg = batched_policy_gradient_loss(batch.actions, out, advantages, mask, dist)
        ent = masked_mean(dist.entropy(out), mask)
        total = pg - entropy_coef * ent + value_coef * value_loss
        metrics.update(policy_loss=pg, entropy=ent, loss=total)
        return total, metrics

    def value_loss_fn(value_params: Any, stats: Any, batch: Batch, value_coef: Any) -> jax.Array:
        params = (
            {"value": value_params} if stats is None else {"value": value_params, "obs_norm": stats}
        )
        return value_coef * value_fit(params, batch)[1]

    def value_only_steps(
        value_params: Any, value_opt_state: Any, stats: Any, batch: Batch, value_coef: Any
    ) -> tuple[Any, Any]:
        def one(_: Any, carry: tuple[Any, Any]) -> tuple[Any, Any]:
            params, opt_state = carry
            grads = jax.grad(value_loss_fn)(params, stats, batch, value_coef)
            updates, opt_state = value_opt.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state

        return jax.lax.fori_loop(0, value_steps, one, (value_params, value_opt_state))

    def init(key: jax.Array, example_obs: jax.Array, obs_stats: Any = None) -> LearnerState:
        pkey, vkey = jax.random.split(key)
        params = {"policy": networks.policy.init(pkey, example_obs)}
        if use_value:
            params["value"] = networks.value.init(vkey, example_obs)
        opt_state = optimizer.init(params)
        value_opt_state = value_opt.init(params["value"]) if value_steps else None
        if obs_stats is not None:
            params["obs_norm"] = obs_stats
        return LearnerState(params, opt_state, jnp.zeros((), jnp.int32), value_opt_state)

    def update(
        state: LearnerState, batch: Batch, hyper: Mapping[str, Any] | None = None
    ) -> tuple[LearnerState, dict[str, jax.Array]]:
        hyper = dict(hyper or {})
        unknown = set(hyper) - set(HYPERPARAMETERS)
        if unknown:
            raise ValueError(f"unknown hyperparameters {sorted(unknown)}; known: {HYPERPARAMETERS}")
        trainable = {k: v for k, v in state.params.items() if k != "obs_norm"}
        stats = state.params.get("obs_norm")
        ent_coef = hyper.get("entropy_coef", entropy_coef)
        if entropy_schedule is not None:
            ent_coef = ent_coef * entropy_schedule(state.step)
        val_coef = hyper.get("value_coef", value_coef)
        grads, metrics = jax.grad(loss_fn, has_aux=True)(
            trainable, stats, batch, ent_coef, val_coef,
        )  # fmt: skip
        opt_hyper = {k: hyper[k] for k in OPTIMIZER_HYPERPARAMETERS if k in hyper}
        opt_state = _with_hyperparameters(state.opt_state, opt_hyper)
        updates, opt_state = optimizer.update(grads, opt_state, trainable)
        params = optax.apply_updates(trainable, updates)
        value_opt_state = state.value_opt_state
        if value_steps:  # value-only steps after the joint one: the policy is not in them
            value_params, value_opt_state = value_only_steps(
                params["value"], _with_hyperparameters(value_opt_state, opt_hyper), stats, batch,
                val_coef,
            )  # fmt: skip
            params = {**params, "value": value_params}
        if stats is not None:
            params["obs_norm"] = stats
        metrics["grad_norm"] = optax.global_norm(grads)
        if entropy_schedule is not None:
            metrics["entropy_coef"] = jnp.asarray(ent_coef, jnp.float32)
        if schedule is not None:
            peak = hyper.get("learning_rate")
            metrics["learning_rate"] = (
                schedule(state.step) if peak is None else schedule(state.step, peak)
            )
        return LearnerState(params, opt_state, state.step + 1, value_opt_state), metrics

    return Learner(init, update)


def _with_hyperparameters(opt_state: Any, values: Mapping[str, Any]) -> Any:
    """``opt_state`` with ``optax.inject_hyperparams`` values replaced (cast to their dtype)."""
    if not values:
        return opt_state
    current = getattr(opt_state, "hyperparams", None)
    missing = [k for k in values if current is None or k not in current]
    if missing:
        raise ValueError(
            f"the optimizer does not expose {missing} (build it with optax.inject_hyperparams)"
        )
    cast = {k: jnp.asarray(v, current[k].dtype) for k, v in values.items()}
    return opt_state._replace(hyperparams={**current, **cast})
