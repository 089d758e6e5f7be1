"""Acrobot-v1 in JAX with gymnasium's dynamics (classic_control/acrobot.py).

The "book" equations of motion (gymnasium's default ``book_or_nips``), one fourth-order Runge-Kutta
step of ``dt = 0.2`` per action, torques ``(-1, 0, +1)`` with no torque noise
(``torque_noise_max = 0``), both angles wrapped into ``[-pi, pi]`` and the angular velocities
clipped to ``±4pi`` and ``±9pi`` after the step. The reward is -1 on every step except the
terminating one, which gets 0; ``terminated`` when the free end rises above the target height
(``-cos(t1) - cos(t1 + t2) > 1``), ``truncated`` after 500 steps (gymnasium's TimeLimit). The
initial state is uniform in ``[-0.1, 0.1]^4``; the observation is
``[cos t1, sin t1, cos t2, sin t2, dt1, dt2]``.

float32 caveat: gymnasium integrates in float64 (only its reset state is float32); this port works
in float32. One step agrees to about 1e-6 along ordinary trajectories (up to ~1e-4 in the
velocities at top speed, where a step amplifies rounding most), but the double pendulum is chaotic,
so a free-running float32 trajectory drifts away from gymnasium's float64 one after some tens of
steps. The parity test therefore compares single transitions, re-syncing gymnasium's state from
ours before each. Run under ``jax.enable_x64`` with a float64 state, this code matches
gymnasium's step to 1e-12 (bit for bit on the test's states).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from reinforce_jax.envs.spec import Discrete

DT = 0.2
LINK_LENGTH_1 = 1.0
LINK_MASS_1 = 1.0
LINK_MASS_2 = 1.0
LINK_COM_POS_1 = 0.5  # position of each link's centre of mass
LINK_COM_POS_2 = 0.5
LINK_MOI = 1.0  # moment of inertia of both links
GRAVITY = 9.8
MAX_VEL_1 = 4 * math.pi
MAX_VEL_2 = 9 * math.pi


class AcrobotState(NamedTuple):
    physics: jax.Array  # [theta1, theta2, dtheta1, dtheta2], float32
    t: jax.Array  # steps taken since reset, int32


def _dsdt(s: jax.Array, torque: jax.Array) -> jax.Array:
    """Time derivative of ``s``: gymnasium's ``_dsdt`` with the "book" ``ddtheta2``."""
    m1, m2, l1, lc1, lc2 = LINK_MASS_1, LINK_MASS_2, LINK_LENGTH_1, LINK_COM_POS_1, LINK_COM_POS_2
    i1 = i2 = LINK_MOI
    g = GRAVITY
    theta1, theta2, dtheta1, dtheta2 = s[0], s[1], s[2], s[3]
    d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * jnp.cos(theta2)) + i1 + i2
    d2 = m2 * (lc2**2 + l1 * lc2 * jnp.cos(theta2)) + i2
    # Written as gymnasium writes it (cos(x - pi/2) rather than sin(x)) to round alike.
    phi2 = m2 * lc2 * g * jnp.cos(theta1 + theta2 - math.pi / 2.0)
    phi1 = (
        -m2 * l1 * lc2 * dtheta2**2 * jnp.sin(theta2)
        - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * jnp.sin(theta2)
        + (m1 * lc1 + m2 * l1) * g * jnp.cos(theta1 - math.pi / 2)
        + phi2
    )
    ddtheta2 = (torque + d2 / d1 * phi1 - m2 * l1 * lc2 * dtheta1**2 * jnp.sin(theta2) - phi2) / (
        m2 * lc2**2 + i2 - d2**2 / d1
    )
    ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
    return jnp.stack([dtheta1, dtheta2, ddtheta1, ddtheta2])


def _rk4(s: jax.Array, torque: jax.Array) -> jax.Array:
    """gymnasium's ``rk4`` over ``[0, DT]``: a single classical Runge-Kutta step."""
    k1 = _dsdt(s, torque)
    k2 = _dsdt(s + DT / 2 * k1, torque)
    k3 = _dsdt(s + DT / 2 * k2, torque)
    k4 = _dsdt(s + DT * k3, torque)
    return s + DT / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)


def _wrap(x: jax.Array, low: float, high: float) -> jax.Array:
    """gymnasium's ``wrap`` (two while-loops adding +-(high - low)) as closed-form shifts."""
    diff = high - low
    x = jnp.where(x > high, x - diff * jnp.ceil((x - high) / diff), x)
    return jnp.where(x < low, x + diff * jnp.ceil((low - x) / diff), x)


def _obs(physics: jax.Array) -> jax.Array:
    t1, t2, dt1, dt2 = physics
    return jnp.stack([jnp.cos(t1), jnp.sin(t1), jnp.cos(t2), jnp.sin(t2), dt1, dt2])


class Acrobot:
    """Functional Acrobot-v1: ``reset(key)`` and ``step(key, state, action)``, both jittable."""

    env_id = "Acrobot-v1"
    obs_shape = (6,)
    action_space = Discrete(3)
    max_episode_steps = 500

    def reset(self, key: jax.Array) -> tuple[AcrobotState, jax.Array]:
        physics = jax.random.uniform(key, (4,), jnp.float32, minval=-0.1, maxval=0.1)
        return AcrobotState(physics, jnp.zeros((), jnp.int32)), _obs(physics)

    def step(
        self, key: jax.Array, state: AcrobotState, action: jax.Array
    ) -> tuple[AcrobotState, jax.Array, jax.Array, jax.Array, jax.Array]:
        """One transition: ``(state, obs, reward, terminated, truncated)``; no autoreset here."""
        del key  # torque noise is 0 in Acrobot-v1: deterministic
        # Actions 0, 1, 2 -> torques -1, 0, +1, in the state's dtype (float64 under x64).
        torque = jnp.asarray(action).astype(state.physics.dtype) - 1.0
        ns = _rk4(state.physics, torque)
        physics = jnp.stack(
            [
                _wrap(ns[0], -math.pi, math.pi),
                _wrap(ns[1], -math.pi, math.pi),
                jnp.clip(ns[2], -MAX_VEL_1, MAX_VEL_1),
                jnp.clip(ns[3], -MAX_VEL_2, MAX_VEL_2),
            ]
        )
        # Termination is judged on the wrapped, clipped state, as gymnasium's _terminal.
        terminated = -jnp.cos(physics[0]) - jnp.cos(physics[1] + physics[0]) > 1.0
        reward = jnp.where(terminated, 0.0, -1.0).astype(jnp.float32)
        t = state.t + 1
        truncated = t >= self.max_episode_steps
        return AcrobotState(physics, t), _obs(physics), reward, terminated, truncated
