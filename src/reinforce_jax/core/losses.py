"""REINFORCE losses and the notebook's categorical helpers, written on a distribution's log-prob.

The loss of one step is :math:`-A \\log \\pi(a|s)`; batched, it is a masked mean. The categorical
helpers (``sample_action``, ``greedy_action``, ``entropy``, ``policy_gradient_loss`` on logits) are
the notebook's building blocks; they are :class:`~reinforce_jax.core.distributions.Categorical`'s
methods under the notebook's names, with its check values asserted in ``tests/test_core_losses.py``.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from reinforce_jax.core.distributions import Categorical, Distribution
from reinforce_jax.core.returns import masked_mean

Array = jax.Array
_CATEGORICAL = Categorical()


def weighted_log_prob(action_prob: chex.Numeric, episode_return: chex.Numeric) -> Array:
    r"""Log-probability of an action weighted by the return that followed it.

    .. math::  w = G \, \log \pi(a \mid s)

    Notebook check: ``weighted_log_prob(0.8, 100) == -22.314354``.
    """
    return episode_return * jnp.log(action_prob)


def sample_action(key: chex.PRNGKey, logits: chex.Array) -> Array:
    r"""Sample an action from the categorical distribution :math:`\pi(a) = \mathrm{softmax}(z)_a`.

    Notebook check: ``sample_action(PRNGKey(42), [1, 2]) == 1``.
    """
    return _CATEGORICAL.sample(key, logits)


def greedy_action(logits: chex.Array) -> Array:
    r"""The most probable action, :math:`\arg\max_a z_a` (used for greedy evaluation)."""
    return _CATEGORICAL.mode(logits)


def entropy(logits: chex.Array) -> Array:
    r"""Entropy of the categorical policy, :math:`H = -\sum_a \pi(a) \log \pi(a)` (last axis)."""
    return _CATEGORICAL.entropy(logits)


def pg_loss(log_prob: chex.Array, advantage: chex.Array) -> Array:
    r"""REINFORCE loss of one step from its log-probability: :math:`\ell = -A \log \pi(a|s)`.

    Its gradient is the (negated) policy-gradient term :math:`-A \nabla_\theta \log \pi_\theta(a|s)`,
    so minimising it ascends the expected return. ``advantage`` is held fixed by the caller.
    """
    return -advantage * log_prob


def policy_gradient_loss(action: chex.Numeric, logits: chex.Array, returns: chex.Numeric) -> Array:
    r"""REINFORCE loss for one step of a categorical policy given by ``logits``.

    .. math::  \ell = -G \log \mathrm{softmax}(z)_a

    ``log_softmax`` keeps it finite where the notebook's ``log(softmax)`` underflows.
    Notebook check: ``(1, [1, 2], 10) -> 3.1326165``.
    """
    chex.assert_rank(logits, 1)
    return pg_loss(_CATEGORICAL.log_prob(logits, action), returns)


def batched_policy_gradient_loss(
    actions: chex.Array,
    dist_params: chex.Array,
    returns: chex.Array,
    mask: chex.Array | None = None,
    dist: Distribution = _CATEGORICAL,
) -> Array:
    r"""Masked mean of the per-step loss over a flat batch (categorical logits by default).

    .. math::  L = \frac{\sum_i m_i \, (-A_i \log \pi(a_i|s_i))}{\max(1, \sum_i m_i)}
    """
    chex.assert_rank(returns, 1)
    return masked_mean(pg_loss(dist.log_prob(dist_params, actions), returns), mask)
