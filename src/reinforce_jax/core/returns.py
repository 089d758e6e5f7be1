"""Returns: discounted reward-to-go (one episode, or time-major with episode ends), TD(lambda)
returns, and masked means.

Unbatched (or explicitly time-major), jittable, free of side effects; each function carries the
equation it computes. The notebook's check values are asserted in ``tests/test_core_returns.py``.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array


def discounted_returns(rewards: chex.Array, gamma: float = 0.99) -> Array:
    r"""Discounted return from every step of one complete episode (reward-to-go).

    .. math::  G_t = \sum_{k=t}^{T-1} \gamma^{k-t} r_k = r_t + \gamma G_{t+1}, \qquad G_T = 0

    Computed in O(T) with a reverse ``lax.scan`` (the notebook's version is O(T^2)); float32.
    Notebook check: ``discounted_returns([1, 2, 3, 4]) == [9.801496, 8.8904, 6.96, 4.0]``.
    """
    rewards = jnp.asarray(rewards, jnp.float32)
    chex.assert_rank(rewards, 1)
    gamma = jnp.asarray(gamma, jnp.float32)

    def backward(g_next: Array, r: Array) -> tuple[Array, Array]:
        g = r + gamma * g_next
        return g, g

    _, returns = lax.scan(backward, jnp.zeros((), jnp.float32), rewards, reverse=True)
    return returns


def batched_discounted_returns(
    rewards: chex.Array, episode_ends: chex.Array, gamma: float = 0.99
) -> tuple[Array, Array]:
    r"""Time-major reward-to-go for a rollout that holds several episodes per environment.

    ``rewards`` and ``episode_ends`` have shape ``[T, ...]`` (time first, then any batch axes).
    ``episode_ends[t]`` is true when step ``t`` was the last of its episode (terminated *or*
    truncated): the return does not flow across it.

    .. math::  G_t = r_t + \gamma (1 - e_t) G_{t+1}, \qquad G_T = 0

    A rollout window usually cuts its last episode short. Those steps have no Monte-Carlo return yet,
    so the function also returns ``complete``: true where the step's episode ends inside the window,

    .. math::  c_t = e_t \lor c_{t+1}, \qquad c_T = \text{false}

    Callers must weight the loss by ``complete`` rather than treat the cut as an episode end.
    Returns ``(returns, complete)``, float32 and bool, both shaped like ``rewards``.
    """
    rewards = jnp.asarray(rewards, jnp.float32)
    episode_ends = jnp.asarray(episode_ends, jnp.bool_)
    chex.assert_equal_shape([rewards, episode_ends])
    gamma = jnp.asarray(gamma, jnp.float32)

    def backward(carry: tuple[Array, Array], step: tuple[Array, Array]):
        g_next, c_next = carry
        r, end = step
        g = r + gamma * jnp.where(end, 0.0, g_next)
        c = end | c_next
        return (g, c), (g, c)

    init = (jnp.zeros(rewards.shape[1:], jnp.float32), jnp.zeros(rewards.shape[1:], jnp.bool_))
    _, (returns, complete) = lax.scan(backward, init, (rewards, episode_ends), reverse=True)
    return returns, complete


def lambda_returns(
    rewards: chex.Array, discounts: chex.Array, next_values: chex.Array, lambda_: float
) -> Array:
    r"""Time-major TD(:math:`\lambda`) returns, bootstrapped from a value at every step.

    ``rewards``, ``discounts`` and ``next_values`` have shape ``[T, ...]``; ``discounts[t]`` is
    :math:`\gamma` where the episode goes on after step ``t`` and 0 where it ended there, and
    ``next_values[t]`` is :math:`V(s_{t+1})`, the value of the observation step ``t`` led to.

    .. math::  G^\lambda_t = r_t + d_t \big[(1 - \lambda) V(s_{t+1}) + \lambda G^\lambda_{t+1}\big],
               \qquad G^\lambda_T = V(s_T)

    :math:`\lambda = 1` is the discounted return completed by :math:`V(s_T)` where the window
    cuts the episode; :math:`\lambda = 0` the one-step TD target. :math:`G^\lambda_t - V(s_t)` is
    the GAE(:math:`\lambda`) advantage. Same equation as ``rlax.lambda_returns`` (its oracle in
    ``tests/test_core.py``), for any batch axes after time; float32.
    """
    rewards = jnp.asarray(rewards, jnp.float32)
    discounts = jnp.asarray(discounts, jnp.float32)
    next_values = jnp.asarray(next_values, jnp.float32)
    chex.assert_equal_shape([rewards, discounts, next_values])
    lam = jnp.asarray(lambda_, jnp.float32)

    def backward(g_next: Array, step: tuple[Array, Array, Array]) -> tuple[Array, Array]:
        r, d, v = step
        g = r + d * ((1.0 - lam) * v + lam * g_next)
        return g, g

    _, returns = lax.scan(
        backward, next_values[-1], (rewards, discounts, next_values), reverse=True
    )
    return returns


def masked_mean(x: chex.Array, mask: chex.Array | None = None) -> Array:
    r"""Mean of ``x`` over the entries where ``mask`` is true: :math:`\sum m x / \max(1, \sum m)`."""
    if mask is None:
        return jnp.mean(x)
    mask = jnp.asarray(mask, x.dtype)
    return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def normalize(x: chex.Array, mask: chex.Array | None = None, eps: float = 1e-8) -> Array:
    r"""Standardise ``x`` over the masked entries: :math:`(x - \mu) / (\sigma + \epsilon)`."""
    mean = masked_mean(x, mask)
    std = jnp.sqrt(masked_mean(jnp.square(x - mean), mask))
    return (x - mean) / (std + eps)
