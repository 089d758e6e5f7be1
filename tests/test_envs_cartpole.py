"""Parity of the JAX CartPole with gymnasium's CartPole-v1, plus reset and vmap behaviour."""

from __future__ import annotations

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reinforce_jax.envs.functional.cartpole import CartPole, CartPoleState

KEY = jax.random.PRNGKey(0)


def time_limit(env: gym.Env) -> gym.wrappers.TimeLimit:
    """The TimeLimit wrapper inside ``gym.make``'s stack (it holds ``_elapsed_steps``)."""
    e = env
    while not isinstance(e, gym.wrappers.TimeLimit):
        e = e.env
    return e


def balancing_action(state: np.ndarray) -> int:
    """A simple controller that keeps CartPole's pole up for the full 500 steps."""
    _, _, theta, theta_dot = state
    return int(theta + 0.5 * theta_dot > 0)


@pytest.fixture(scope="module")
def jax_step():
    env = CartPole()
    return jax.jit(env.step)


def run_parity(jax_step, policy, num_steps: int, seed: int, min_episodes: int = 0):
    """Step gymnasium and, from gymnasium's pre-step state, the JAX env; compare every output.

    Returns ``(episodes finished, number of truncations, number of terminations)``.
    """
    env = gym.make("CartPole-v1")
    limit = time_limit(env)
    assert limit._max_episode_steps == CartPole.max_episode_steps == 500
    rng = np.random.default_rng(seed)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    episodes = truncations = terminations = 0
    for i in range(num_steps):
        gym_state = np.array(env.unwrapped.state, np.float64)
        np.testing.assert_allclose(gym_state.astype(np.float32), obs, atol=1e-6)
        elapsed = limit._elapsed_steps
        action = policy(gym_state, rng)

        state = CartPoleState(
            physics=jnp.asarray(gym_state, jnp.float32), t=jnp.asarray(elapsed, jnp.int32)
        )
        new_state, j_obs, j_reward, j_term, j_trunc = jax_step(KEY, state, jnp.int32(action))
        obs, reward, terminated, truncated, _ = env.step(action)

        where = f"step {i} (episode {episodes}, t={elapsed}, action={action})"
        np.testing.assert_allclose(np.asarray(j_obs), obs, atol=1e-5, err_msg=where)
        np.testing.assert_allclose(np.asarray(new_state.physics), obs, atol=1e-5, err_msg=where)
        assert j_obs.dtype == jnp.float32
        assert float(j_reward) == reward, where
        assert bool(j_term) == terminated, where
        assert bool(j_trunc) == truncated, where
        assert int(new_state.t) == limit._elapsed_steps == elapsed + 1, where

        if terminated or truncated:
            episodes += 1
            truncations += int(truncated)
            terminations += int(terminated)
            obs, _ = env.reset()
    env.close()
    assert episodes >= min_episodes
    return episodes, truncations, terminations


def test_parity_with_gymnasium_random_actions(jax_step):
    episodes, truncations, terminations = run_parity(
        jax_step, lambda s, rng: int(rng.integers(2)), num_steps=1200, seed=7, min_episodes=20
    )
    assert terminations >= 20  # random play ends many episodes by termination


def test_parity_with_gymnasium_truncation_at_500(jax_step):
    # The balancing controller, with a few random actions mixed in; runs two full episodes.
    def policy(state, rng):
        return int(rng.integers(2)) if rng.random() < 0.05 else balancing_action(state)

    episodes, truncations, _ = run_parity(jax_step, policy, num_steps=1000, seed=3)
    assert truncations >= 1  # truncated=True was reported by both at the same step
    assert episodes >= 2


def test_truncation_not_before_500(jax_step):
    # Free-running JAX episode with the controller: never terminates, truncates exactly at t=500.
    env = CartPole()
    state, obs = env.reset(jax.random.PRNGKey(5))
    for t in range(1, 501):
        state, obs, reward, terminated, truncated = jax_step(
            KEY, state, jnp.int32(balancing_action(np.asarray(obs)))
        )
        assert not bool(terminated), t
        assert bool(truncated) == (t == 500), t
        assert int(state.t) == t
        assert float(reward) == 1.0


def test_reward_one_on_the_terminating_step(jax_step):
    # Pole just past the angle threshold after one step: terminated, and reward is still 1.
    physics = jnp.array([0.0, 0.0, 0.2, 2.0], jnp.float32)
    state, _, reward, terminated, truncated = jax_step(
        KEY, CartPoleState(physics, jnp.int32(3)), jnp.int32(1)
    )
    assert bool(terminated) and not bool(truncated)
    assert float(reward) == 1.0
    # Cart past the position threshold.
    physics = jnp.array([-2.39, -1.0, 0.0, 0.0], jnp.float32)
    _, _, _, terminated, _ = jax_step(KEY, CartPoleState(physics, jnp.int32(0)), jnp.int32(0))
    assert bool(terminated)


# --------------------------------------------------------------------------------------------
# reset
# --------------------------------------------------------------------------------------------


def test_reset():
    env = CartPole()
    reset = jax.jit(env.reset)
    seen = []
    for i in range(20):
        state, obs = reset(jax.random.PRNGKey(i))
        assert obs.shape == (4,) == env.obs_shape
        assert obs.dtype == jnp.float32
        assert state.physics.dtype == jnp.float32
        obs = np.asarray(obs)
        assert np.all(obs >= -0.05) and np.all(obs <= 0.05)
        np.testing.assert_array_equal(np.asarray(state.physics), obs)
        assert int(state.t) == 0
        assert jnp.issubdtype(state.t.dtype, jnp.integer)
        seen.append(obs)
    seen = np.stack(seen)
    # Different keys give different states; the same key gives the same state.
    assert len({tuple(s) for s in seen}) == len(seen)
    np.testing.assert_array_equal(np.asarray(reset(jax.random.PRNGKey(3))[1]), seen[3])
    # The states cover the range (not, e.g., all zero or all positive).
    assert seen.min() < -0.03 and seen.max() > 0.03


# --------------------------------------------------------------------------------------------
# vmap
# --------------------------------------------------------------------------------------------


def test_vmap_reset_and_step():
    env = CartPole()
    n = 8
    keys = jax.random.split(jax.random.PRNGKey(1), n)
    states, obs = jax.jit(jax.vmap(env.reset))(keys)
    assert obs.shape == (n, 4)
    assert states.physics.shape == (n, 4) and states.t.shape == (n,)

    # Give the batch different time steps so some truncate.
    states = CartPoleState(states.physics, jnp.arange(n, dtype=jnp.int32) + 495)
    actions = jnp.arange(n, dtype=jnp.int32) % 2
    step = jax.jit(jax.vmap(env.step))
    new_states, new_obs, rewards, terminated, truncated = step(keys, states, actions)
    assert new_obs.shape == (n, 4) and rewards.shape == (n,)
    assert terminated.shape == truncated.shape == (n,)
    np.testing.assert_array_equal(np.asarray(truncated), np.arange(n) + 495 + 1 >= 500)

    for i in range(n):
        single = CartPoleState(states.physics[i], states.t[i])
        s_i, o_i, r_i, te_i, tr_i = env.step(keys[i], single, actions[i])
        np.testing.assert_allclose(np.asarray(new_obs[i]), np.asarray(o_i), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(
            np.asarray(new_states.physics[i]), np.asarray(s_i.physics), rtol=1e-6, atol=1e-7
        )
        assert int(new_states.t[i]) == int(s_i.t)
        assert float(rewards[i]) == float(r_i)
        assert bool(terminated[i]) == bool(te_i) and bool(truncated[i]) == bool(tr_i)

    # A vmapped, scanned rollout runs too.
    def rollout(state, acts):
        def body(s, a):
            s, o, r, te, tr = env.step(KEY, s, a)
            return s, (o, r)

        return jax.lax.scan(body, state, acts)

    acts = jax.random.bernoulli(jax.random.PRNGKey(2), 0.5, (n, 10)).astype(jnp.int32)
    final, (traj_obs, traj_r) = jax.jit(jax.vmap(rollout))(states, acts)
    assert traj_obs.shape == (n, 10, 4) and traj_r.shape == (n, 10)
    np.testing.assert_array_equal(np.asarray(final.t), np.asarray(states.t) + 10)
