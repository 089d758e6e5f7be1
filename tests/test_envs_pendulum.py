"""Parity of the JAX Pendulum with gymnasium's Pendulum-v1, plus reset and vmap behaviour.

Both environments run side by side from the same start (gymnasium's state is set from ours after
each reset) and are fed the same torques, including out-of-range ones; float32 stays within
``ATOL`` of gymnasium's float64 over whole 200-step episodes without re-syncing (our ``th`` is kept
wrapped, gymnasium's is not, so states are compared modulo 2 pi).
"""

from __future__ import annotations

import math

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envparity import (
    KEY,
    assert_transitions_match,
    assert_truncates_exactly_at,
    assert_uniform_in,
    assert_vmap_step_matches_single_steps,
    batch_reset,
    gym_step_from,
    gym_unwrapped,
    run_parity,
    step_batch,
)
from reinforce_jax.envs.functional.pendulum import Pendulum, PendulumState

ATOL = 1e-4  # obs, float32 vs float64 over an episode (seen: ~1e-5)
REWARD_ATOL = 2e-4  # the cost reaches ~16 (seen: ~4e-5)


def wrapped_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (np.asarray(a, np.float64) - b + math.pi) % (2 * math.pi) - math.pi


@pytest.fixture(scope="module")
def jax_step():
    return jax.jit(Pendulum().step)


def check_step(ours, gym_obs, gym_state, where):
    """Same state as gymnasium's, with th wrapped into [-pi, pi); never terminated."""
    th, thdot = np.asarray(ours.state.physics)
    g_th, g_thdot = gym_state
    assert abs(wrapped_difference(th, g_th)) < ATOL and abs(thdot - g_thdot) < ATOL, where
    assert -math.pi - 1e-6 <= th <= math.pi + 1e-6, where
    assert not bool(ours.terminated), where


def parity(jax_step, policy, num_steps: int, seed: int) -> int:
    """Step gymnasium and the JAX env side by side; compare every output. Returns truncations."""
    assert gym.make("Pendulum-v1").unwrapped.g == 10.0
    counts = run_parity(
        Pendulum(), jax_step, policy, num_steps, seed, max_episode_steps=200, sync="reset",
        obs_atol=ATOL, reward_rtol=0.0, reward_atol=REWARD_ATOL, check_step=check_step,
    )  # fmt: skip
    assert counts.terminations == 0
    return counts.truncations


def test_parity_random_torques(jax_step):
    # Torques in [-3, 3]: a third of them out of range and clipped by both.
    def policy(obs, rng):
        return rng.uniform(-3.0, 3.0, size=(1,)).astype(np.float32)

    assert parity(jax_step, policy, num_steps=400, seed=0) == 2


def test_parity_spinning(jax_step):
    # Full torque along the velocity spins the pendulum over the top again and again (gymnasium's
    # th grows to tens of radians), with the speed clip at 8 active.
    def policy(obs, rng):
        return np.array([2.0 if obs[2] >= 0 else -2.0], np.float32)

    assert parity(jax_step, policy, num_steps=200, seed=1) == 1


def test_transitions_from_many_states_match_gymnasium():
    # Single transitions from states gymnasium can be in, th far outside [-pi, pi] included.
    env = gym_unwrapped("Pendulum-v1")
    rng = np.random.default_rng(2)
    states = np.stack([rng.uniform(-40, 40, 100), rng.uniform(-8, 8, 100)], axis=1)
    actions = rng.uniform(-2.5, 2.5, (100, 1)).astype(np.float32)
    new = step_batch(Pendulum(), PendulumState, states, actions)
    for i in range(100):
        start = np.asarray(states[i], np.float32).astype(np.float64)
        g_obs, g_reward, *_ = gym_step_from(env, start, actions[i])
        np.testing.assert_allclose(np.asarray(new.obs[i]), g_obs, rtol=0, atol=ATOL, err_msg=str(i))
        np.testing.assert_allclose(float(new.reward[i]), g_reward, rtol=0, atol=REWARD_ATOL)
    assert not np.any(new.terminated) and not np.any(new.truncated)


def test_float64_transitions_match_gymnasium_exactly():
    # Under x64 the same code computes in float64 like gymnasium (the float32 action aside): then
    # one step agrees to ~1e-12, which pins every constant far tighter than the float32 tests can.
    n = 200
    rng = np.random.default_rng(4)
    states = np.stack([rng.uniform(-40, 40, n), rng.uniform(-8, 8, n)], axis=1)
    actions = rng.uniform(-2.5, 2.5, (n, 1)).astype(np.float32)
    env = gym_unwrapped("Pendulum-v1")
    new = step_batch(Pendulum(), PendulumState, states, actions, x64=True)
    for i in range(n):
        _, g_reward, *_ = gym_step_from(env, states[i].copy(), actions[i])
        th, thdot = np.asarray(new.state.physics[i])
        assert (
            abs(wrapped_difference(th, env.state[0])) < 1e-12 and abs(thdot - env.state[1]) < 1e-12
        )
        np.testing.assert_allclose(float(new.reward[i]), g_reward, rtol=0, atol=1e-12)


def test_out_of_range_torques_are_clipped_like_gymnasium(jax_step):
    state = PendulumState(jnp.array([0.5, -1.0], jnp.float32), jnp.int32(0))
    torques = [-10.0, -2.5, -2.0, 0.0, 1.0, 2.0, 2.5, 10.0]
    cases = [((0.5, -1.0), np.array([a], np.float32)) for a in torques]
    steps = assert_transitions_match(
        Pendulum(), jax_step, PendulumState, cases, obs_atol=1e-6, reward_rtol=1e-6
    )
    for a, ours in zip(torques, steps, strict=True):
        # The torque *and* its cost use the clipped action.
        _, c_obs, c_reward, *_ = jax_step(KEY, state, jnp.array([np.clip(a, -2.0, 2.0)]))
        np.testing.assert_array_equal(np.asarray(ours.obs), np.asarray(c_obs))
        assert float(ours.reward) == float(c_reward)


def test_never_terminates_truncates_at_200():
    key = jax.random.PRNGKey(3)
    actions = jax.random.uniform(key, (200, 1), minval=-2.0, maxval=2.0)
    rewards = assert_truncates_exactly_at(Pendulum(), 200, actions, key)
    # Cost is at most pi^2 + 0.1 * 8^2 + 0.001 * 2^2.
    assert np.all(rewards <= 0) and np.all(rewards >= -16.2736)


def test_reset():
    env = Pendulum()
    n = 512
    physics, obs = batch_reset(env, n)
    assert env.obs_shape == (3,)
    th, thdot = physics.T
    np.testing.assert_allclose(obs, np.stack([np.cos(th), np.sin(th), thdot], 1), atol=1e-6)
    # gymnasium: th uniform in [-pi, pi], thdot uniform in [-1, 1].
    pi = np.float32(math.pi)
    assert_uniform_in(th, -pi, pi, reach=(-3.0, 3.0), mean_tol=0.25)
    assert_uniform_in(thdot, -1.0, 1.0, reach=(-0.95, 0.95), mean_tol=0.1)
    assert len(np.unique(th)) == n


def test_vmap_step_matches_single_steps():
    env = Pendulum()
    assert env.action_space.shape == (1,) and env.action_space.bounded
    assert_vmap_step_matches_single_steps(
        env, jnp.linspace(-3.0, 3.0, 8)[:, None], t0=195, limit=200, rtol=1e-6, atol=1e-6,
        reward_rtol=1e-6, reward_atol=1e-6,
    )  # fmt: skip
