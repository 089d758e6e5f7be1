r"""Sources of experience, both producing time-major rollouts for the one learner.

* :func:`make_jax_rollout`: a JAX-native environment stepped inside the compiled program (vmap over
  environments, ``lax.scan`` over time).
* :class:`reinforce_jax.host.HostRollout`: gymnasium environments stepped on the host, the policy
  jitted over the batch; it carries episodes cut by a window over to the next one.

Both return a :class:`Rollout` of shape ``[T, N]`` whose ``episode_ends`` marks the last step of
every episode (terminated or truncated). :func:`to_batch` turns it into the learner's flat batch with
Monte-Carlo returns, masking the steps of episodes that the window cut (they have no return yet).
Time-limit truncation is explicit. Without a value function the return stops at the limit (the
objective is the return within the time limit). With a learned value (``bootstrap_value``) a
truncated step's reward is completed by :math:`\gamma V(s_{T})`, the estimate of what the episode
would have gone on to earn, so late steps are not punished for a clock the policy cannot see.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from reinforce_jax import math as rl
from reinforce_jax.learner import Batch
from reinforce_jax.policy import Networks


class Rollout(NamedTuple):
    obs: jax.Array  # [T, N, *obs_shape]
    actions: jax.Array  # [T, N]
    rewards: jax.Array  # [T, N] rewards to learn from (bootstrapped at truncation, if asked)
    episode_ends: jax.Array  # [T, N] bool: terminated | truncated
    episode_returns: jax.Array  # [T, N] undiscounted return of the episode ending here, else 0
    episode_lengths: jax.Array  # [T, N] length of the episode ending here, else 0


def to_batch(rollout: Rollout, gamma: float) -> Batch:
    """Flatten a rollout into the learner's batch with reward-to-go and the completeness mask."""
    returns, complete = rl.batched_discounted_returns(rollout.rewards, rollout.episode_ends, gamma)
    flat = lambda x: x.reshape((-1,) + x.shape[2:])  # noqa: E731
    return Batch(
        obs=flat(rollout.obs),
        actions=flat(rollout.actions),
        returns=flat(returns),
        mask=flat(complete).astype(jnp.float32),
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


def make_jax_rollout(
    env: Any,
    networks: Networks,
    num_envs: int,
    num_steps: int,
    gamma: float,
    bootstrap_value: bool = False,
) -> Callable[[Any, jax.Array], Rollout]:
    """``rollout(params, key)``: reset ``num_envs`` environments, step them ``num_steps`` times.

    Environments reset automatically when an episode ends, so a window holds several episodes.
    With ``bootstrap_value`` the reward of a truncated (not terminated) step gains
    ``gamma * V(final obs)`` from ``params["value"]``; ``episode_returns`` stay the true sums.
    """

    def rollout(params: Any, key: jax.Array) -> Rollout:
        key, reset_key = jax.random.split(key)
        state, obs = jax.vmap(env.reset)(jax.random.split(reset_key, num_envs))
        zeros = jnp.zeros((num_envs,), jnp.float32)

        def step(carry, step_key):
            state, obs, ep_return, ep_length = carry
            act_key, env_key, reset_key = jax.random.split(step_key, 3)
            action = rl.sample_action(act_key, networks.policy.apply(params["policy"], obs))
            env_keys = jax.random.split(env_key, num_envs)
            next_state, next_obs, reward, terminated, truncated = jax.vmap(env.step)(
                env_keys, state, action
            )
            done = terminated | truncated
            ep_return = ep_return + reward
            learn_reward = reward
            if bootstrap_value:
                cut = truncated & ~terminated
                value = networks.value.apply(params["value"], next_obs)
                learn_reward = reward + jnp.where(cut, gamma * value, 0.0)
            ep_length = ep_length + 1
            reset_state, reset_obs = jax.vmap(env.reset)(jax.random.split(reset_key, num_envs))
            pick = lambda r, n: jnp.where(done.reshape(done.shape + (1,) * (n.ndim - 1)), r, n)  # noqa: E731
            next_state = jax.tree.map(pick, reset_state, next_state)
            next_obs = pick(reset_obs, next_obs)
            out = Rollout(
                obs, action, learn_reward, done,
                jnp.where(done, ep_return, 0.0), jnp.where(done, ep_length, 0.0),
            )  # fmt: skip
            carry = (
                next_state,
                next_obs,
                jnp.where(done, 0.0, ep_return),
                jnp.where(done, 0.0, ep_length),
            )
            return carry, out

        _, traj = jax.lax.scan(step, (state, obs, zeros, zeros), jax.random.split(key, num_steps))
        return traj

    return rollout


def make_jax_evaluate(
    env: Any, policy_apply: Callable, num_episodes: int, greedy: bool
) -> Callable[[Any, jax.Array], jax.Array]:
    """``evaluate(policy_params, key) -> returns[num_episodes]``: one full episode per environment."""

    def evaluate(params: Any, key: jax.Array) -> jax.Array:
        key, reset_key = jax.random.split(key)
        state, obs = jax.vmap(env.reset)(jax.random.split(reset_key, num_episodes))

        def step(carry, step_key):
            state, obs, total, alive = carry
            act_key, env_key = jax.random.split(step_key)
            logits = policy_apply(params, obs)
            action = rl.greedy_action(logits) if greedy else rl.sample_action(act_key, logits)
            state, obs, reward, terminated, truncated = jax.vmap(env.step)(
                jax.random.split(env_key, num_episodes), state, action
            )
            total = total + jnp.where(alive, reward, 0.0)
            alive = alive & ~(terminated | truncated)
            return (state, obs, total, alive), None

        init = (state, obs, jnp.zeros((num_episodes,)), jnp.ones((num_episodes,), bool))
        keys = jax.random.split(key, env.max_episode_steps)
        (_, _, total, _), _ = jax.lax.scan(step, init, keys)
        return total

    return evaluate
