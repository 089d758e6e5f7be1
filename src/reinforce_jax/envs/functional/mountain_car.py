"""MountainCar-v0 in JAX with exactly gymnasium's dynamics (classic_control/mountain_car.py).

Each step: ``velocity += (action - 1) * 0.001 - 0.0025 * cos(3 * position)``, clipped to
``±0.07``; ``position += velocity``, clipped to ``[-1.2, 0.6]``; hitting the left wall while
moving left zeroes the velocity. Reward -1 on every step, including the one that terminates;
``terminated`` when ``position >= 0.5`` and ``velocity >= 0``; ``truncated`` after 200 steps
(gymnasium's TimeLimit). Reset: position uniform in ``[-0.6, -0.4]``, velocity 0.

float32 caveat: gymnasium keeps the state in float64 and only casts the observation; this port
computes in float32, which agrees with it to about 1e-5 over a whole episode (the dynamics are not
chaotic), so the parity test runs both side by side from a shared start.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from reinforce_jax.envs.spec import Discrete

MIN_POSITION = -1.2
MAX_POSITION = 0.6
MAX_SPEED = 0.07
GOAL_POSITION = 0.5
GOAL_VELOCITY = 0.0
FORCE = 0.001
GRAVITY = 0.0025


class MountainCarState(NamedTuple):
    physics: jax.Array  # [position, velocity], float32
    t: jax.Array  # steps taken since reset, int32


class MountainCar:
    """Functional MountainCar-v0: ``reset(key)`` and ``step(key, state, action)``, both jittable."""

    env_id = "MountainCar-v0"
    obs_shape = (2,)
    action_space = Discrete(3)
    max_episode_steps = 200

    def reset(self, key: jax.Array) -> tuple[MountainCarState, jax.Array]:
        position = jax.random.uniform(key, (), jnp.float32, minval=-0.6, maxval=-0.4)
        physics = jnp.stack([position, jnp.zeros((), jnp.float32)])
        return MountainCarState(physics, jnp.zeros((), jnp.int32)), physics

    def step(
        self, key: jax.Array, state: MountainCarState, action: jax.Array
    ) -> tuple[MountainCarState, jax.Array, jax.Array, jax.Array, jax.Array]:
        """One transition: ``(state, obs, reward, terminated, truncated)``; no autoreset here."""
        del key  # deterministic dynamics
        position, velocity = state.physics
        push = jnp.asarray(action).astype(velocity.dtype) - 1.0  # actions 0, 1, 2 -> -1, 0, +1
        velocity = velocity + push * FORCE + jnp.cos(3 * position) * (-GRAVITY)
        velocity = jnp.clip(velocity, -MAX_SPEED, MAX_SPEED)
        # The position moves with the *new* velocity (semi-implicit Euler).
        position = jnp.clip(position + velocity, MIN_POSITION, MAX_POSITION)
        # An inelastic left wall: only a car pressing into it stops.
        velocity = jnp.where((position == MIN_POSITION) & (velocity < 0), 0.0, velocity)
        terminated = (position >= GOAL_POSITION) & (velocity >= GOAL_VELOCITY)
        physics = jnp.stack([position, velocity])
        t = state.t + 1
        truncated = t >= self.max_episode_steps
        reward = jnp.full((), -1.0, jnp.float32)
        return MountainCarState(physics, t), physics, reward, terminated, truncated
