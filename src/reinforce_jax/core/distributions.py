r"""Action distributions as values: the policy network outputs their parameters.

A :class:`Distribution` bundles pure functions of the network's output (rlax's and rejax's shape):
``sample(key, params)``, ``mode(params)`` (greedy evaluation), ``log_prob(params, action)`` and
``entropy(params)``; all work on any leading batch axes. :func:`for_action_space` picks one from
an environment's action space, so trainers, rollouts and evaluation never branch on it.
"""

from __future__ import annotations

from typing import Protocol

import chex
import jax
import jax.numpy as jnp

from reinforce_jax.core.spaces import ActionSpace, Discrete

Array = jax.Array


class Distribution(Protocol):
    """What every action distribution provides."""

    action_shape: tuple[int, ...]  # shape of one action
    action_dtype: jnp.dtype
    num_params: int  # size of the policy network's output

    def sample(self, key: chex.PRNGKey, params: chex.Array) -> Array: ...

    def mode(self, params: chex.Array) -> Array: ...

    def log_prob(self, params: chex.Array, action: chex.Array) -> Array: ...

    def entropy(self, params: chex.Array) -> Array: ...


class Categorical:
    r"""Categorical over ``n`` actions with logits :math:`z`: :math:`\pi(a) = \mathrm{softmax}(z)_a`."""

    action_shape: tuple[int, ...] = ()
    action_dtype = jnp.int32

    def __init__(self, n: int = 2):
        self.num_params = n

    def sample(self, key: chex.PRNGKey, logits: chex.Array) -> Array:
        """One action per row of ``logits`` (Gumbel-max, ``jax.random.categorical``)."""
        return jax.random.categorical(key, logits)

    def mode(self, logits: chex.Array) -> Array:
        r""":math:`\arg\max_a z_a`."""
        return jnp.argmax(logits, axis=-1)

    def log_prob(self, logits: chex.Array, action: chex.Array) -> Array:
        r""":math:`\log \mathrm{softmax}(z)_a`, via ``log_softmax`` (finite where softmax underflows)."""
        log_probs = jax.nn.log_softmax(logits, axis=-1)
        action = jnp.asarray(action, jnp.int32)
        return jnp.take_along_axis(log_probs, action[..., None], axis=-1)[..., 0]

    def entropy(self, logits: chex.Array) -> Array:
        r""":math:`H = -\sum_a \pi(a) \log \pi(a)` over the last axis."""
        log_probs = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1)


def for_action_space(space: ActionSpace) -> Distribution:
    """The distribution a policy over ``space`` uses."""
    if isinstance(space, Discrete):
        return Categorical(space.n)
    raise ValueError(f"no action distribution for a {type(space).__name__} action space yet")
