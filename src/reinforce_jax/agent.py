"""The one action function: parameters and observations in, actions out.

Every trainer's rollout, both evaluation backends, ``reinforce evaluate``, ``reinforce video`` and
the shipped policies act through :func:`make_act`, so the observation normaliser, the distribution
and greedy-versus-sampled choice are applied in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from reinforce_jax.config import Config
from reinforce_jax.core.distributions import Distribution, Gaussian, for_action_space
from reinforce_jax.core.spaces import ActionSpace
from reinforce_jax.networks import Networks, make_networks, policy_output

Act = Callable[[Any, jax.Array, jax.Array], jax.Array]

# A Gaussian policy's mean head starts 100x smaller than usual (Tianshou's recipe): every state
# starts at the centre of the box with the spread exp(log_std_init). A categorical policy's head
# starts at the usual size. ``cfg.head_scale`` (when not 0) replaces either.
GAUSSIAN_HEAD_SCALE = 0.01
CATEGORICAL_HEAD_SCALE = 1.0


def policy_networks(
    cfg: Config, space: ActionSpace, with_value: bool = False
) -> tuple[Networks, Distribution]:
    """The networks and distribution ``cfg`` describes for actions in ``space`` (one place for the
    trainers, ``reinforce evaluate`` and ``reinforce video``); ``ValueError`` if none fits."""
    dist = for_action_space(space, cfg.action_bounds)
    if isinstance(dist, Gaussian):
        head = cfg.head_scale or GAUSSIAN_HEAD_SCALE
        networks = make_networks(dist.num_params, cfg.hidden_sizes, cfg.activation, with_value,
                                 head, cfg.log_std_init, cfg.value_scale)  # fmt: skip
    else:
        head = cfg.head_scale or CATEGORICAL_HEAD_SCALE
        networks = make_networks(dist.num_params, cfg.hidden_sizes, cfg.activation, with_value,
                                 head, value_scale=cfg.value_scale)  # fmt: skip
    return networks, dist


class PolicyAct:
    """``act(params, obs[B, ...], key) -> actions[B, ...]``: the mode if ``greedy``, else a sample.

    Also in two halves, for rollouts that draw a whole window's randomness before their loop (one
    batched draw instead of a PRNG call per step, which on the CPU costs more than the step):
    ``act(params, obs, key) == act.from_noise(params, obs, act.noise(key, (B,)))``.
    """

    def __init__(self, networks: Networks, dist: Distribution, greedy: bool):
        self.networks, self.dist, self.greedy = networks, dist, greedy

    def __call__(self, params: Any, obs: jax.Array, key: jax.Array) -> jax.Array:
        out = policy_output(self.networks, params, obs)
        return self.dist.mode(out) if self.greedy else self.dist.sample(key, out)

    def noise(self, key: jax.Array, batch_shape: tuple[int, ...]) -> jax.Array:
        """What ``__call__`` draws from ``key`` for a batch of ``batch_shape`` (nothing if greedy)."""
        if self.greedy:
            return jnp.zeros((*batch_shape, 0), jnp.float32)
        return self.dist.noise(key, batch_shape)

    def from_noise(self, params: Any, obs: jax.Array, noise: jax.Array) -> jax.Array:
        out = policy_output(self.networks, params, obs)
        return self.dist.mode(out) if self.greedy else self.dist.sample_from(out, noise)


def make_act(networks: Networks, dist: Distribution, greedy: bool) -> PolicyAct:
    """The action function of ``networks`` and ``dist`` (see :class:`PolicyAct`).

    Pure and unjitted (it is traced into the compiled programs); ``key`` is consumed, never reused.
    """
    return PolicyAct(networks, dist, greedy)


def make_host_act(act: Act) -> Callable[[Any, Any, jax.Array], tuple[jax.Array, jax.Array]]:
    """``act`` jitted for a host loop: ``(params, obs, key) -> (actions, next key)``, one call a step."""

    def step(params: Any, obs: Any, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        key, sub = jax.random.split(key)
        return act(params, obs, sub), key

    return jax.jit(step)
