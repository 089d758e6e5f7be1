"""CartPole-v1 in JAX with exactly gymnasium's dynamics (classic_control/cartpole.py).

Euler integration, the same constants and thresholds, reward 1 on every step (including the one
that terminates), ``terminated`` when the cart or pole leaves its bounds, ``truncated`` after 500
steps (gymnasium's TimeLimit), initial state uniform in [-0.05, 0.05]^4. Note that gymnasium's own
functional ``phys2d`` CartPole is *not* this environment: its ``polemass_length`` is
``masspole + length`` instead of the product. The parity test steps both side by side.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from reinforce_jax.envs.spec import Discrete

GRAVITY = 9.8
MASSCART = 1.0
MASSPOLE = 0.1
TOTAL_MASS = MASSPOLE + MASSCART
LENGTH = 0.5  # half the pole's length
POLEMASS_LENGTH = MASSPOLE * LENGTH
FORCE_MAG = 10.0
TAU = 0.02
THETA_THRESHOLD = 12 * 2 * math.pi / 360
X_THRESHOLD = 2.4


class CartPoleState(NamedTuple):
    physics: jax.Array  # [x, x_dot, theta, theta_dot], float32
    t: jax.Array  # steps taken since reset, int32


class CartPole:
    """Functional CartPole-v1: ``reset(key)`` and ``step(key, state, action)``, both jittable."""

    env_id = "CartPole-v1"
    obs_shape = (4,)
    action_space = Discrete(2)
    max_episode_steps = 500
    max_return = 500.0  # +1 a step: an evaluation can stop early once 500 is out of reach

    def reset(self, key: jax.Array) -> tuple[CartPoleState, jax.Array]:
        physics = jax.random.uniform(key, (4,), jnp.float32, minval=-0.05, maxval=0.05)
        return CartPoleState(physics, jnp.zeros((), jnp.int32)), physics

    def step(
        self, key: jax.Array, state: CartPoleState, action: jax.Array
    ) -> tuple[CartPoleState, jax.Array, jax.Array, jax.Array, jax.Array]:
        """One transition: ``(state, obs, reward, terminated, truncated)``; no autoreset here."""
        del key  # deterministic dynamics
        x, x_dot, theta, theta_dot = state.physics
        force = jnp.where(action == 1, FORCE_MAG, -FORCE_MAG)
        costheta, sintheta = jnp.cos(theta), jnp.sin(theta)
        temp = (force + POLEMASS_LENGTH * theta_dot**2 * sintheta) / TOTAL_MASS
        thetaacc = (GRAVITY * sintheta - costheta * temp) / (
            LENGTH * (4.0 / 3.0 - MASSPOLE * costheta**2 / TOTAL_MASS)
        )
        xacc = temp - POLEMASS_LENGTH * thetaacc * costheta / TOTAL_MASS
        # Euler: positions move with the *old* velocities.
        physics = jnp.stack(
            [
                x + TAU * x_dot,
                x_dot + TAU * xacc,
                theta + TAU * theta_dot,
                theta_dot + TAU * thetaacc,
            ]
        )
        x, theta = physics[0], physics[2]
        terminated = (jnp.abs(x) > X_THRESHOLD) | (jnp.abs(theta) > THETA_THRESHOLD)
        t = state.t + 1
        truncated = t >= self.max_episode_steps
        reward = jnp.ones((), jnp.float32)
        return CartPoleState(physics, t), physics, reward, terminated, truncated
