r"""Time-major trajectories, the learner's batch, and the step from one to the other.

Every source of experience produces a :class:`Rollout` of shape ``[T, N]`` whose ``episode_ends``
marks the last step of every episode (terminated or truncated). :func:`to_batch` turns it into the
learner's flat :class:`Batch` with Monte-Carlo returns, masking the steps of episodes that the
window cut (they have no return yet).

Time-limit truncation is explicit. Without a value function the return stops at the limit (the
objective is the return within the time limit). With a learned value the truncated step's reward is
completed by :math:`\gamma V(s_{T})` (:func:`bootstrap_truncation`), the estimate of what the episode
would have gone on to earn, so late steps are not punished for a clock the policy cannot see.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from reinforce_jax.core.returns import batched_discounted_returns, lambda_returns


class Rollout(NamedTuple):
    obs: jax.Array  # [T, N, *obs_shape]
    actions: jax.Array  # [T, N, *action_shape]
    rewards: jax.Array  # [T, N] rewards to learn from (bootstrapped at truncation, if asked)
    episode_ends: jax.Array  # [T, N] bool: terminated | truncated
    episode_returns: jax.Array  # [T, N] undiscounted return of the episode ending here, else 0
    episode_lengths: jax.Array  # [T, N] length of the episode ending here, else 0


class Batch(NamedTuple):
    """The learner's flat batch."""

    obs: jax.Array  # [B, *obs_shape]
    actions: jax.Array  # [B, *action_shape]
    returns: jax.Array  # [B] reward-to-go
    mask: jax.Array  # [B] 1 where the step counts


def bootstrap_truncation(reward, terminated, truncated, value, gamma: float):
    r"""Reward to learn from: :math:`r + \gamma V(s_T)` where the time limit (not termination)
    ended the episode, else :math:`r`. Works on JAX (traced) and NumPy (host) arrays alike."""
    xp = np if isinstance(reward, np.ndarray) else jnp
    cut = truncated & ~terminated
    return reward + xp.where(cut, gamma * value, 0.0).astype(reward.dtype)


def to_batch(rollout: Rollout, gamma: float) -> Batch:
    """Flatten a rollout into the learner's batch with reward-to-go and the completeness mask."""
    returns, complete = batched_discounted_returns(rollout.rewards, rollout.episode_ends, gamma)
    flat = lambda x: x.reshape((-1,) + x.shape[2:])  # noqa: E731
    return Batch(
        obs=flat(rollout.obs),
        actions=flat(rollout.actions),
        returns=flat(returns),
        mask=flat(complete).astype(jnp.float32),
    )


def to_lambda_batch(
    rollout: Rollout, next_values: jax.Array, gamma: float, lambda_: float
) -> Batch:
    r"""Flatten a rollout into the learner's batch with TD(:math:`\lambda`) returns.

    ``next_values[t]`` is :math:`V(s_{t+1})`, the value of the observation step ``t`` led to
    (the window's last step's: the observation the next window starts from; at an episode's end
    it is not used). Every step is learned, the window's cut episodes completed by the value
    (:func:`~reinforce_jax.core.returns.lambda_returns`), so the mask is all ones.
    """
    discounts = jnp.float32(gamma) * (1.0 - rollout.episode_ends.astype(jnp.float32))
    returns = lambda_returns(rollout.rewards, discounts, next_values, lambda_)
    flat = lambda x: x.reshape((-1,) + x.shape[2:])  # noqa: E731
    return Batch(
        obs=flat(rollout.obs),
        actions=flat(rollout.actions),
        returns=flat(returns),
        mask=jnp.ones(returns.size, jnp.float32),
    )


def episode_stats(rollout: Rollout) -> dict[str, jax.Array]:
    """Mean return and length of the episodes that ended inside the window (NaN if none did)."""
    ends = rollout.episode_ends.astype(jnp.float32)
    count = jnp.sum(ends)
    safe = jnp.maximum(count, 1.0)
    nan = jnp.float32(jnp.nan)
    return {
        "episodes": count,
        "episode_return": jnp.where(count > 0, jnp.sum(rollout.episode_returns) / safe, nan),
        "episode_length": jnp.where(count > 0, jnp.sum(rollout.episode_lengths) / safe, nan),
    }
