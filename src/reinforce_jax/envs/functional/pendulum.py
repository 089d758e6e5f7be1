"""Pendulum-v1 in JAX with exactly gymnasium's dynamics (classic_control/pendulum.py), g = 10.

Each step: the torque is the action clipped to ``[-2, 2]``; the cost
``angle_normalize(th)**2 + 0.1 * thdot**2 + 0.001 * u**2`` is taken on the state *before* the
step (the reward is its negative); then ``thdot += (3g / 2l * sin(th) + 3 / (m l**2) * u) * dt``,
clipped to ``±8``, and ``th += thdot * dt`` with the new ``thdot`` (dt = 0.05, m = l = 1). It
never terminates; ``truncated`` after 200 steps (gymnasium's TimeLimit). Reset: ``th`` uniform in
``[-pi, pi]``, ``thdot`` uniform in ``[-1, 1]``. The observation is ``[cos th, sin th, thdot]``.

float32 caveat: gymnasium computes in float64 and casts only the observation. It never wraps
``th``, so a spinning pendulum's ``th`` grows to about 80 rad in 200 steps, where float32 keeps only
about 1e-5 rad of it (obs errors up to ~2e-4 by the episode's end). This port therefore stores ``th``
wrapped into ``[-pi, pi)`` after every step: everything observable (the observation, the cost, the
dynamics) is 2pi-periodic in ``th``, so nothing changes but the precision, and the observation then
agrees with gymnasium's to about 1e-5 over a whole episode; the parity test runs both side by side.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from reinforce_jax.envs.spec import Box

MAX_SPEED = 8.0
MAX_TORQUE = 2.0
DT = 0.05
G = 10.0
M = 1.0
L = 1.0


class PendulumState(NamedTuple):
    physics: jax.Array  # [th, thdot], float32; th kept in [-pi, pi) (gymnasium lets it grow)
    t: jax.Array  # steps taken since reset, int32


def angle_normalize(x: jax.Array) -> jax.Array:
    """``x`` mapped into ``[-pi, pi)`` (jnp's ``%`` takes the divisor's sign, like numpy's)."""
    return ((x + math.pi) % (2 * math.pi)) - math.pi


def _obs(physics: jax.Array) -> jax.Array:
    th, thdot = physics
    return jnp.stack([jnp.cos(th), jnp.sin(th), thdot])


class Pendulum:
    """Functional Pendulum-v1: ``reset(key)`` and ``step(key, state, action)``, both jittable."""

    env_id = "Pendulum-v1"
    obs_shape = (3,)
    action_space = Box(low=(-MAX_TORQUE,), high=(MAX_TORQUE,))
    max_episode_steps = 200

    def reset(self, key: jax.Array) -> tuple[PendulumState, jax.Array]:
        high = jnp.array([math.pi, 1.0], jnp.float32)
        physics = jax.random.uniform(key, (2,), jnp.float32, minval=-high, maxval=high)
        return PendulumState(physics, jnp.zeros((), jnp.int32)), _obs(physics)

    def step(
        self, key: jax.Array, state: PendulumState, action: jax.Array
    ) -> tuple[PendulumState, jax.Array, jax.Array, jax.Array, jax.Array]:
        """One transition: ``(state, obs, reward, terminated, truncated)``; no autoreset here.

        ``action`` has shape ``(1,)``; it is clipped to ``[-2, 2]`` here, as gymnasium does.
        """
        del key  # deterministic dynamics
        th, thdot = state.physics
        u = jnp.clip(jnp.asarray(action, jnp.float32), -MAX_TORQUE, MAX_TORQUE)[0]
        costs = angle_normalize(th) ** 2 + 0.1 * thdot**2 + 0.001 * u**2
        newthdot = thdot + (3 * G / (2 * L) * jnp.sin(th) + 3.0 / (M * L**2) * u) * DT
        newthdot = jnp.clip(newthdot, -MAX_SPEED, MAX_SPEED)
        newth = th + newthdot * DT
        # Wrapped only to keep float32 precision; see the module docstring.
        physics = jnp.stack([angle_normalize(newth), newthdot])
        t = state.t + 1
        truncated = t >= self.max_episode_steps
        terminated = jnp.zeros((), jnp.bool_)
        return PendulumState(physics, t), _obs(physics), -costs, terminated, truncated
