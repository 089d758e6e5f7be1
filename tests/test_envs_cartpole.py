"""Parity of the JAX CartPole with gymnasium's CartPole-v1, plus reset and vmap behaviour."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envparity import (
    KEY,
    ParityCounts,
    assert_uniform_in,
    assert_vmap_step_matches_single_steps,
    run_parity,
)
from reinforce_jax.envs.functional.cartpole import CartPole, CartPoleState


def balancing_action(state: np.ndarray) -> int:
    """A simple controller that keeps CartPole's pole up for the full 500 steps."""
    _, _, theta, theta_dot = state
    return int(theta + 0.5 * theta_dot > 0)


@pytest.fixture(scope="module")
def jax_step():
    env = CartPole()
    return jax.jit(env.step)


def check_step(ours, gym_obs, gym_state, where):
    """Our new state is gymnasium's observation."""
    np.testing.assert_allclose(np.asarray(ours.state.physics), gym_obs, atol=1e-5, err_msg=where)


def parity(jax_step, policy, num_steps: int, seed: int, min_episodes: int = 0) -> ParityCounts:
    """Step gymnasium and, from gymnasium's pre-step state, the JAX env; compare every output."""
    counts = run_parity(
        CartPole(), jax_step, policy, num_steps, seed, max_episode_steps=500, sync="from_gym",
        obs_atol=1e-5, obs_rtol=1e-7, check_step=check_step, state_cls=CartPoleState,
    )  # fmt: skip
    assert counts.episodes >= min_episodes
    return counts


def test_parity_with_gymnasium_random_actions(jax_step):
    counts = parity(
        jax_step, lambda s, rng: int(rng.integers(2)), num_steps=1200, seed=7, min_episodes=20
    )
    assert counts.terminations >= 20  # random play ends many episodes by termination


def test_parity_with_gymnasium_truncation_at_500(jax_step):
    # The balancing controller, with a few random actions mixed in; runs two full episodes.
    def policy(state, rng):
        return int(rng.integers(2)) if rng.random() < 0.05 else balancing_action(state)

    counts = parity(jax_step, policy, num_steps=1000, seed=3)
    assert counts.truncations >= 1  # truncated=True was reported by both at the same step
    assert counts.episodes >= 2


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
        np.testing.assert_array_equal(np.asarray(state.physics), obs)
        assert int(state.t) == 0
        assert jnp.issubdtype(state.t.dtype, jnp.integer)
        seen.append(obs)
    seen = np.stack(seen)
    # Different keys give different states; the same key gives the same state.
    assert len({tuple(s) for s in seen}) == len(seen)
    np.testing.assert_array_equal(np.asarray(reset(jax.random.PRNGKey(3))[1]), seen[3])
    # All within +-0.05, and the states cover the range (not, e.g., all zero or all positive).
    assert_uniform_in(seen.ravel(), -0.05, 0.05, reach=(-0.03, 0.03))


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

    # Give the batch different time steps so some truncate; compare with single steps.
    states, _ = assert_vmap_step_matches_single_steps(
        env, jnp.arange(n, dtype=jnp.int32) % 2, t0=495, limit=500, rtol=1e-6, atol=1e-7
    )

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
