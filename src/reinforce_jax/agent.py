"""The one action function: parameters and observations in, actions out.

Every trainer's rollout, both evaluation backends, ``reinforce evaluate``, ``reinforce video`` and
the shipped policies act through :func:`make_act`, so the observation normaliser, the distribution
and greedy-versus-sampled choice are applied in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from reinforce_jax.core.distributions import Distribution
from reinforce_jax.networks import Networks, policy_output

Act = Callable[[Any, jax.Array, jax.Array], jax.Array]


def make_act(networks: Networks, dist: Distribution, greedy: bool) -> Act:
    """``act(params, obs[B, ...], key) -> actions[B, ...]``: the mode if ``greedy``, else a sample.

    Pure and unjitted (it is traced into the compiled programs); ``key`` is consumed, never reused.
    """

    def act(params: Any, obs: jax.Array, key: jax.Array) -> jax.Array:
        out = policy_output(networks, params, obs)
        return dist.mode(out) if greedy else dist.sample(key, out)

    return act


def make_host_act(act: Act) -> Callable[[Any, Any, jax.Array], tuple[jax.Array, jax.Array]]:
    """``act`` jitted for a host loop: ``(params, obs, key) -> (actions, next key)``, one call a step."""

    def step(params: Any, obs: Any, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        key, sub = jax.random.split(key)
        return act(params, obs, sub), key

    return jax.jit(step)
