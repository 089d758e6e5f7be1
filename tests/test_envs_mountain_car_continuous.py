"""Parity of the JAX MountainCarContinuous with gymnasium's MountainCarContinuous-v0.

Both environments run side by side from the same start (gymnasium's state is set from ours after
each reset) and are fed the same actions, including out-of-range ones; the dynamics are not
chaotic, so float32 stays within ``ATOL`` of gymnasium over whole episodes without re-syncing.
Also: the clipping of actions (dynamics only, not the reward's penalty), the left wall versus the
goal (gymnax zeroes the velocity at the goal; gymnasium does not), reset, and vmap.
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
    physics_is_obs,
    run_parity,
)
from reinforce_jax.envs.functional.mountain_car_continuous import (
    MountainCarContinuous,
    MountainCarContinuousState,
)

ATOL = 1e-4  # float32 vs gymnasium, accumulated over an episode (seen: ~3e-6)
REWARD_ATOL = 1e-4  # 100 - 0.1 a^2 in float32


def along_velocity(obs: np.ndarray) -> np.ndarray:
    """Push the way the car moves (energy pumping); reaches the goal in ~110 steps."""
    return np.array([1.0 if obs[1] >= 0 else -1.0], np.float32)


@pytest.fixture(scope="module")
def jax_step():
    return jax.jit(MountainCarContinuous().step)


def parity(jax_step, policy, num_steps: int, seed: int) -> ParityCounts:
    """Step gymnasium and the JAX env side by side; compare every output."""
    return run_parity(
        MountainCarContinuous(), jax_step, policy, num_steps, seed, max_episode_steps=999,
        sync="reset", obs_atol=ATOL, reward_atol=REWARD_ATOL, check_step=physics_is_obs,
    )  # fmt: skip


def test_parity_random_actions_full_length_truncation(jax_step):
    # Random actions in [-1.5, 1.5] (a third of them out of range) never reach the goal: one full
    # 999-step episode, truncated by both at the same step.
    def policy(obs, rng):
        return rng.uniform(-1.5, 1.5, size=(1,)).astype(np.float32)

    counts = parity(jax_step, policy, num_steps=999, seed=0)
    assert counts.truncations == 1 and counts.terminations == 0


def test_parity_pumping_reaches_goal(jax_step):
    # Pushing along the velocity (scaled, sometimes out of range) reaches the goal: covers the
    # terminating step and its +100 reward.
    def policy(obs, rng):
        return along_velocity(obs) * np.float32(rng.choice([0.9, 1.0, 1.3]))

    counts = parity(jax_step, policy, 500, seed=1)
    assert counts.terminations >= 3 and counts.truncations == 0
    assert all(99.8 <= r < 100.0 for r in counts.final_rewards)


def test_out_of_range_actions_are_clipped_like_gymnasium(jax_step):
    # gymnasium clips the force to [-1, 1] but penalises the action as given: -0.1 * a^2.
    env = MountainCarContinuous()
    for physics in [(-0.5, 0.0), (-0.3, 0.02), (0.2, -0.03)]:
        state = MountainCarContinuousState(jnp.array(physics, jnp.float32), jnp.int32(0))
        actions = [-5.0, -1.5, -1.0, -0.3, 0.0, 0.7, 1.0, 1.5, 5.0]
        cases = [(physics, np.array([a], np.float32)) for a in actions]
        steps = assert_transitions_match(
            env, jax_step, MountainCarContinuousState, cases, obs_atol=1e-6, reward_rtol=1e-6
        )
        for a, ours in zip(actions, steps, strict=True):
            where = f"{physics}, action {a}"
            # The dynamics see the clipped action; the penalty sees the raw one.
            clipped = jax_step(KEY, state, jnp.array([np.clip(a, -1.0, 1.0)], jnp.float32))[1]
            np.testing.assert_array_equal(np.asarray(ours.obs), np.asarray(clipped), err_msg=where)
            np.testing.assert_allclose(float(ours.reward), -0.1 * a * a, rtol=1e-6, err_msg=where)


def test_wall_and_goal_transitions_match_gymnasium(jax_step):
    # The velocity is zeroed at the left wall only; at the goal it is kept (gymnax's bug zeroes it
    # there instead).
    cases = [
        ((-1.19, -0.05), -1.0),  # into the wall: position -1.2, velocity 0
        ((-1.19, -0.05), 1.0),
        ((-1.2, 0.0), 1.0),
        ((-1.0, -0.07), -1.0),  # speed clip
        ((0.44, 0.03), 1.0),  # reaches the goal moving right: velocity kept
        ((0.46, -0.001), -1.0),  # past 0.45 but moving left: not terminated
        ((0.59, 0.07), 1.0),  # clipped at 0.6
    ]
    assert_transitions_match(
        MountainCarContinuous(), jax_step, MountainCarContinuousState,
        [(physics, np.array([a], np.float32)) for physics, a in cases],
        obs_atol=1e-6, reward_rtol=0.0, reward_atol=REWARD_ATOL,
    )  # fmt: skip
    wall = MountainCarContinuousState(jnp.array([-1.19, -0.05]), jnp.int32(0))
    _, obs, *_ = jax_step(KEY, wall, jnp.array([-1.0]))
    assert float(obs[0]) == np.float32(-1.2) and float(obs[1]) == 0.0
    goal = MountainCarContinuousState(jnp.array([0.44, 0.03]), jnp.int32(0))
    _, obs, reward, terminated, _ = jax_step(KEY, goal, jnp.array([1.0]))
    assert bool(terminated) and float(obs[1]) > 0.03 and float(reward) == pytest.approx(99.9)


def test_truncation_not_before_999():
    # No push (action 0) never reaches the goal: not terminated, truncated exactly at t = 999.
    rewards = assert_truncates_exactly_at(MountainCarContinuous(), 999, jnp.zeros((999, 1)))
    assert np.all(rewards == 0.0)


def test_reset():
    env = MountainCarContinuous()
    physics, obs = batch_reset(env, 512)
    assert env.obs_shape == (2,)
    np.testing.assert_array_equal(physics, obs)
    # gymnasium: position uniform in [-0.6, -0.4], velocity exactly 0.
    assert_uniform_in(obs[:, 0], -0.6, -0.4, reach=(-0.59, -0.41), mean_tol=0.01)
    assert np.all(obs[:, 1] == 0.0)
    assert len(np.unique(obs[:, 0])) == 512


def test_vmap_step_matches_single_steps():
    env = MountainCarContinuous()
    assert env.action_space.shape == (1,) and env.action_space.bounded
    n = 8
    assert_vmap_step_matches_single_steps(
        env, jnp.linspace(-2.0, 2.0, n)[:, None], t0=995, limit=999, rtol=1e-6, atol=1e-7,
        reward_rtol=1e-6, edit_physics=lambda p: p.at[:, 1].set(jnp.linspace(-0.07, 0.07, n)),
    )  # fmt: skip
