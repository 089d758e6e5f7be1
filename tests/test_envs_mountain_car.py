"""Parity of the JAX MountainCar with gymnasium's MountainCar-v0, plus reset and vmap behaviour.

Both environments run side by side from the same start (gymnasium's state is set from ours after
each reset) and are fed the same actions; the dynamics are not chaotic, so float32 stays within
``ATOL`` of gymnasium's float64 over whole episodes without re-syncing.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envparity import (
    KEY,
    ParityCounts,
    assert_transitions_match,
    assert_truncates_exactly_at,
    assert_uniform_in,
    assert_vmap_step_matches_single_steps,
    batch_reset,
    gym_step_from,
    gym_unwrapped,
    physics_is_obs,
    run_parity,
    step_batch,
)
from reinforce_jax.envs.functional.mountain_car import MountainCar, MountainCarState

ATOL = 1e-4  # float32 vs gymnasium's float64, accumulated over an episode (seen: ~1e-5)


def pump(obs: np.ndarray) -> int:
    """Energy pumping: push the way the car already moves; reaches the goal in ~90-180 steps."""
    return 2 if obs[1] > 0 else 0


@pytest.fixture(scope="module")
def jax_step():
    return jax.jit(MountainCar().step)


def check_step(ours, gym_obs, gym_state, where):
    """Our state is our observation, and every reward (the terminating step's too) is -1."""
    physics_is_obs(ours, gym_obs, gym_state, where)
    assert float(ours.reward) == -1.0, where


def parity(jax_step, policy, num_steps: int, seed: int) -> ParityCounts:
    """Step gymnasium and the JAX env side by side; compare every output (rewards exactly)."""
    return run_parity(
        MountainCar(), jax_step, policy, num_steps, seed, max_episode_steps=200, sync="reset",
        obs_atol=ATOL, check_step=check_step,
    )  # fmt: skip


def test_parity_random_actions_full_length_truncation(jax_step):
    # Random play never reaches the goal: every episode runs the full 200 steps and truncates.
    counts = parity(jax_step, lambda obs, rng: int(rng.integers(3)), num_steps=400, seed=0)
    assert counts.truncations == 2 and counts.terminations == 0


def test_parity_energy_pumping_reaches_goal(jax_step):
    # Mostly pumping, with some random actions; covers the terminating step and its reward (-1).
    def policy(obs, rng):
        return int(rng.integers(3)) if rng.random() < 0.2 else pump(obs)

    counts = parity(jax_step, policy, 600, seed=1)
    assert counts.terminations >= 3
    assert counts.final_rewards == [-1.0] * counts.terminations


def test_left_wall_and_goal_transitions_match_gymnasium(jax_step):
    # Single transitions from hand-picked states: the inelastic left wall (velocity zeroed only
    # when pressing into it), the position and speed clips, and the goal's velocity condition.
    cases = [
        ((-1.19, -0.05), 0),  # into the wall: position -1.2, velocity 0
        ((-1.19, -0.05), 2),
        ((-1.2, 0.0), 0),  # resting at the wall
        ((-1.2, 0.0), 2),
        ((-1.0, -0.07), 0),  # speed clip
        ((0.45, 0.07), 2),  # reaches the goal moving right
        ((0.5, -0.001), 0),  # past 0.5 but moving left: not terminated
        ((0.59, 0.07), 2),  # clipped at 0.6
    ]
    assert_transitions_match(MountainCar(), jax_step, MountainCarState, cases, obs_atol=1e-6)
    # The wall really zeroes the velocity, and the goal really terminates.
    _, obs, *_ = jax_step(
        KEY, MountainCarState(jnp.array([-1.19, -0.05]), jnp.int32(0)), jnp.int32(0)
    )
    assert float(obs[0]) == np.float32(-1.2) and float(obs[1]) == 0.0


def test_float64_transitions_match_gymnasium_exactly():
    # Under x64 the same code computes in float64 like gymnasium: then one step agrees to ~1e-15,
    # which pins every constant and clip far tighter than the float32 tests can.
    n = 300
    rng = np.random.default_rng(4)
    states = np.stack([rng.uniform(-1.2, 0.6, n), rng.uniform(-0.07, 0.07, n)], axis=1)
    states[:20, 0] = -1.2  # at the left wall
    actions = np.arange(n) % 3
    env = gym_unwrapped("MountainCar-v0")
    new = step_batch(MountainCar(), MountainCarState, states, actions, x64=True)
    for i in range(n):
        _, g_reward, g_terminated, _, _ = gym_step_from(env, tuple(states[i]), int(actions[i]))
        np.testing.assert_allclose(
            np.asarray(new.state.physics[i]), np.array(env.state, np.float64), rtol=0, atol=1e-15
        )
        assert float(new.reward[i]) == g_reward and bool(new.terminated[i]) == g_terminated
    assert 10 <= int(np.sum(new.terminated)) <= n - 10


def test_truncation_not_before_200():
    # Coasting (action 1) never reaches the goal: not terminated, truncated exactly at t = 200.
    rewards = assert_truncates_exactly_at(MountainCar(), 200, jnp.ones(200, jnp.int32))
    assert np.all(rewards == -1.0)


def test_reset():
    env = MountainCar()
    physics, obs = batch_reset(env, 512)
    assert env.obs_shape == (2,)
    np.testing.assert_array_equal(physics, obs)
    # gymnasium: position uniform in [-0.6, -0.4], velocity exactly 0.
    assert_uniform_in(obs[:, 0], -0.6, -0.4, reach=(-0.59, -0.41), mean_tol=0.01)
    assert np.all(obs[:, 1] == 0.0)
    assert len(np.unique(obs[:, 0])) == 512
    single = env.reset(jax.random.PRNGKey(7))[1]
    np.testing.assert_array_equal(
        np.asarray(single), np.asarray(env.reset(jax.random.PRNGKey(7))[1])
    )


def test_vmap_step_matches_single_steps():
    n = 8
    assert_vmap_step_matches_single_steps(
        MountainCar(), jnp.arange(n, dtype=jnp.int32) % 3, t0=196, limit=200, rtol=1e-6,
        atol=1e-7, edit_physics=lambda p: p.at[:, 1].set(jnp.linspace(-0.07, 0.07, n)),
    )  # fmt: skip
