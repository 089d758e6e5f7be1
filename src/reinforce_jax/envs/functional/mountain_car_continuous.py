"""MountainCarContinuous-v0 in JAX with gymnasium's dynamics (continuous_mountain_car.py).

Each step: the force is the action clipped to ``[-1, 1]``;
``velocity += force * 0.0015 - 0.0025 * cos(3 * position)``, clipped to ``±0.07``;
``position += velocity``, clipped to ``[-1.2, 0.6]``; hitting the left wall while moving left
zeroes the velocity (and only there: gymnax zeroes it at the goal instead, which gymnasium does
not). ``terminated`` when ``position >= 0.45`` and ``velocity >= 0``; the reward is
``-0.1 * action**2`` plus 100 on the terminating step, where the penalty uses the action *as
given*, before clipping, exactly as gymnasium does. ``truncated`` after 999 steps (gymnasium's
TimeLimit). Reset: position uniform in ``[-0.6, -0.4]``, velocity 0.

float32 caveat: gymnasium stores this environment's state as float32 after every step (its reset
state is float64), while its arithmetic mixes float32 and float64; this port is float32 throughout
and agrees with it to a few 1e-6 over a whole episode, so the parity test runs both side by side.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from reinforce_jax.envs.spec import Box

MIN_ACTION = -1.0
MAX_ACTION = 1.0
MIN_POSITION = -1.2
MAX_POSITION = 0.6
MAX_SPEED = 0.07
GOAL_POSITION = 0.45
GOAL_VELOCITY = 0.0
POWER = 0.0015
GRAVITY = 0.0025


class MountainCarContinuousState(NamedTuple):
    physics: jax.Array  # [position, velocity], float32
    t: jax.Array  # steps taken since reset, int32


class MountainCarContinuous:
    """Functional MountainCarContinuous-v0: ``reset(key)`` and ``step(key, state, action)``."""

    env_id = "MountainCarContinuous-v0"
    obs_shape = (2,)
    action_space = Box(low=(MIN_ACTION,), high=(MAX_ACTION,))
    max_episode_steps = 999

    def reset(self, key: jax.Array) -> tuple[MountainCarContinuousState, jax.Array]:
        position = jax.random.uniform(key, (), jnp.float32, minval=-0.6, maxval=-0.4)
        physics = jnp.stack([position, jnp.zeros((), jnp.float32)])
        return MountainCarContinuousState(physics, jnp.zeros((), jnp.int32)), physics

    def step(
        self, key: jax.Array, state: MountainCarContinuousState, action: jax.Array
    ) -> tuple[MountainCarContinuousState, jax.Array, jax.Array, jax.Array, jax.Array]:
        """One transition: ``(state, obs, reward, terminated, truncated)``; no autoreset here.

        ``action`` has shape ``(1,)``; out-of-range values are clipped for the dynamics only.
        """
        del key  # deterministic dynamics
        position, velocity = state.physics
        a = jnp.asarray(action, jnp.float32)[0]
        force = jnp.clip(a, MIN_ACTION, MAX_ACTION)
        velocity = velocity + force * POWER - GRAVITY * jnp.cos(3 * position)
        velocity = jnp.clip(velocity, -MAX_SPEED, MAX_SPEED)
        position = jnp.clip(position + velocity, MIN_POSITION, MAX_POSITION)
        velocity = jnp.where((position == MIN_POSITION) & (velocity < 0), 0.0, velocity)
        terminated = (position >= GOAL_POSITION) & (velocity >= GOAL_VELOCITY)
        # gymnasium penalises the unclipped action: a = 3 moves like 1 but costs 0.9, not 0.1.
        reward = jnp.where(terminated, 100.0, 0.0) - a**2 * 0.1
        physics = jnp.stack([position, velocity])
        t = state.t + 1
        truncated = t >= self.max_episode_steps
        return (
            MountainCarContinuousState(physics, t),
            physics,
            reward.astype(jnp.float32),
            terminated,
            truncated,
        )
