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

``max_kl`` (> 0) bounds how far one update may move the policy: the policy's step (the optimizer's
update of ``params["policy"]``) is scaled by the largest fraction :math:`f` in
:data:`KL_FRACTIONS` whose estimated :math:`KL(\pi_{old} \| \pi_{new})` on the batch stays within
it, and by 0 when none does. The estimate is Schulman's non-negative
:math:`\mathbb{E}_{a \sim \pi_{old}}[(r - 1) - \log r]`, :math:`r = \pi_{new}(a|s) / \pi_{old}(a|s)`,
over the batch's own (sampled) actions, so it needs only ``log_prob``. The gradient estimator is
REINFORCE's; only the step length changes (a backtracking line search, as TRPO's, along Adam's
direction).
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

# The fractions of a policy step tried, in turn, under ``max_kl`` (then 0: no policy step).
KL_FRACTIONS = (1.0, 0.5, 0.25, 0.125, 0.0625)

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
    max_kl: float = 0.0,
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

    ``max_kl`` (0 = off): the largest estimated KL divergence from the old policy to the new one
    on the batch that a policy step may take (the module's docstring); the metrics then hold
    ``kl`` (of the step taken) and ``kl_fraction`` (its fraction of the optimizer's step).
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
    if not max_kl >= 0.0:
        raise ValueError(f"max_kl must be >= 0, got {max_kl!r}")
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

    def kl_line_search(
        old: Any, new: Any, stats: Any, batch: Batch
    ) -> tuple[Any, jax.Array, jax.Array]:
        """``new``'s policy pulled back toward ``old``'s to the first fraction whose KL estimate
        is within ``max_kl`` (every fraction is evaluated at once; the first that fits wins)."""
        extra = {} if stats is None else {"obs_norm": stats}

        def log_prob(policy: Any) -> jax.Array:
            out = policy_output(networks, {"policy": policy, **extra}, batch.obs)
            return dist.log_prob(out, batch.actions)

        def toward(f: jax.Array) -> Any:  # the policy after fraction f of the step
            return jax.tree.map(lambda o, n: o + f * (n - o), old["policy"], new["policy"])

        old_logp = log_prob(old["policy"])

        def kl_at(f: jax.Array) -> jax.Array:
            log_r = log_prob(toward(f)) - old_logp
            return masked_mean(jnp.expm1(log_r) - log_r, batch.mask)

        fractions = jnp.asarray(KL_FRACTIONS, jnp.float32)
        kls = jax.vmap(kl_at)(fractions)
        fits = kls <= max_kl
        first = jnp.argmax(fits)  # the largest fraction that fits (they are in decreasing order)
        fraction = jnp.where(fits[first], fractions[first], 0.0)
        kl = jnp.where(fits[first], kls[first], 0.0)
        return {**new, "policy": toward(fraction)}, kl, fraction

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
        if max_kl:
            params, metrics["kl"], metrics["kl_fraction"] = kl_line_search(
                trainable, params, stats, batch
            )
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
