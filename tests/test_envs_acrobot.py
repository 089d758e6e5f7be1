"""Parity of the JAX Acrobot with gymnasium's Acrobot-v1, plus reset and vmap behaviour.

The double pendulum is chaotic: a free-running float32 trajectory leaves gymnasium's float64 one
after some tens of steps (errors pass 1e-4 by step ~80 with the swinging policy). So the episode
tests re-sync gymnasium's state from ours before every step and compare single transitions along
our trajectory; another test compares single transitions from many states spread over the whole
state space (wrapping and velocity clipping included). Episode ends, rewards and the time limit
are compared at every step.
"""

from __future__ import annotations

import math

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envparity import (
    ParityCounts,
    assert_truncates_exactly_at,
    assert_uniform_in,
    assert_vmap_step_matches_single_steps,
    batch_reset,
    gym_step_from,
    gym_unwrapped,
    run_parity,
    step_batch,
)
from reinforce_jax.envs.functional.acrobot import Acrobot, AcrobotState

ATOL = 1e-4  # one RK4 step, float32 vs float64 (seen: ~1e-6 along episodes, ~9e-5 at top speed)
MAX_VEL_1, MAX_VEL_2 = 4 * math.pi, 9 * math.pi


def swing(obs: np.ndarray) -> int:
    """Torque along the second joint's velocity: pumps energy, ends an episode in ~60-160 steps."""
    return 2 if obs[5] > 0 else 0


@pytest.fixture(scope="module")
def jax_step():
    return jax.jit(Acrobot().step)


def check_step(ours, gym_obs, gym_state, where):
    """Our state after the step is gymnasium's (from the same re-synced start)."""
    np.testing.assert_allclose(
        np.asarray(ours.state.physics), gym_state, rtol=0, atol=ATOL, err_msg=where
    )


def parity(jax_step, policy, num_steps: int, seed: int) -> ParityCounts:
    """Step our env; before each step set gymnasium's state to ours; compare every output."""
    gym_env = gym.make("Acrobot-v1").unwrapped
    assert gym_env.book_or_nips == "book" and gym_env.torque_noise_max == 0.0
    return run_parity(
        Acrobot(), jax_step, policy, num_steps, seed, max_episode_steps=500, sync="step",
        obs_atol=ATOL, check_step=check_step,
    )  # fmt: skip


def test_parity_random_actions_full_length_truncation(jax_step):
    # Random torques rarely lift the tip: two full 500-step episodes, truncated by both.
    counts = parity(jax_step, lambda obs, rng: int(rng.integers(3)), num_steps=1000, seed=0)
    assert counts.truncations == 2 and counts.terminations == 0


def test_parity_swinging_terminates_with_reward_zero(jax_step):
    # The swinging controller, with a few random actions, reaches the target height: covers the
    # terminating step, whose reward is 0 (every other step's is -1).
    def policy(obs, rng):
        return int(rng.integers(3)) if rng.random() < 0.1 else swing(obs)

    counts = parity(jax_step, policy, 700, seed=1)
    assert counts.terminations >= 4 and counts.truncations == 0
    assert counts.final_rewards == [0.0] * counts.terminations


def test_transitions_from_many_states_match_gymnasium():
    # Single transitions from states spread over the whole state space: angles anywhere, speeds
    # up to the clip limits (so many steps wrap an angle or clip a velocity), every action.
    n = 300
    rng = np.random.default_rng(3)
    states = np.stack(
        [
            rng.uniform(-math.pi, math.pi, n),
            rng.uniform(-math.pi, math.pi, n),
            rng.uniform(-MAX_VEL_1, MAX_VEL_1, n),
            rng.uniform(-MAX_VEL_2, MAX_VEL_2, n),
        ],
        axis=1,
    ).astype(np.float32)
    actions = np.arange(n) % 3
    new = step_batch(Acrobot(), AcrobotState, states, actions)
    env = gym_unwrapped("Acrobot-v1")
    clipped = wrapped = 0
    for i in range(n):
        g_obs, g_reward, g_terminated, _, _ = gym_step_from(
            env, states[i].astype(np.float64), int(actions[i])
        )
        where = f"state {states[i]}, action {actions[i]}"
        # Plus a relative tolerance for the velocities (up to 28 rad/s; seen: 9e-5 relative).
        np.testing.assert_allclose(
            np.asarray(new.obs[i]), g_obs, rtol=3e-5, atol=ATOL, err_msg=where
        )
        assert float(new.reward[i]) == g_reward and bool(new.terminated[i]) == g_terminated, where
        clipped += int(
            abs(g_obs[4]) == np.float32(MAX_VEL_1) or abs(g_obs[5]) == np.float32(MAX_VEL_2)
        )
        wrapped += int(np.any(np.abs(np.asarray(env.state[:2]) - states[i, :2]) > math.pi))
    assert not np.any(new.truncated)
    assert clipped >= 10 and wrapped >= 50  # both code paths were exercised
    assert 10 <= int(np.sum(new.terminated)) <= n - 10


def test_float64_transitions_match_gymnasium_exactly():
    # Under x64 the same code computes in float64 like gymnasium: then one step agrees to ~1e-12,
    # which pins every constant and term of the dynamics far tighter than the float32 tests can.
    n = 200
    rng = np.random.default_rng(4)
    high = np.array([math.pi, math.pi, MAX_VEL_1, MAX_VEL_2])
    states = rng.uniform(-high, high, (n, 4))
    actions = np.arange(n) % 3
    env = gym_unwrapped("Acrobot-v1")
    new = step_batch(Acrobot(), AcrobotState, states, actions, x64=True)
    for i in range(n):
        _, g_reward, g_terminated, _, _ = gym_step_from(env, states[i].copy(), int(actions[i]))
        np.testing.assert_allclose(np.asarray(new.state.physics[i]), env.state, rtol=0, atol=1e-12)
        assert float(new.reward[i]) == g_reward and bool(new.terminated[i]) == g_terminated


def test_truncation_not_before_500():
    # No torque (action 1) from near the bottom never lifts the tip: truncated exactly at t = 500.
    rewards = assert_truncates_exactly_at(Acrobot(), 500, jnp.ones(500, jnp.int32))
    assert np.all(rewards == -1.0)


def test_reset():
    env = Acrobot()
    n = 512
    physics, obs = batch_reset(env, n)
    assert env.obs_shape == (6,)
    # gymnasium: all four state variables uniform in [-0.1, 0.1].
    assert_uniform_in(physics, -0.1, 0.1, reach=(-0.095, 0.095), mean_tol=0.01)
    t1, t2, dt1, dt2 = physics.T
    expected = np.stack([np.cos(t1), np.sin(t1), np.cos(t2), np.sin(t2), dt1, dt2], 1)
    np.testing.assert_allclose(obs, expected, atol=1e-6)
    assert len({tuple(p) for p in physics}) == n


def test_vmap_step_matches_single_steps(jax_step):
    assert_vmap_step_matches_single_steps(
        Acrobot(), jnp.arange(8, dtype=jnp.int32) % 3, t0=495, limit=500, rtol=1e-5, atol=1e-5,
        edit_physics=lambda p: p * 20, single_step=jax_step,
    )  # fmt: skip
