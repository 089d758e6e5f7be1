"""Policy (and value) networks.

Anything with ``init(key, obs) -> params`` and ``apply(params, obs) -> output`` is a network here:
a Flax linen module (the default :class:`MLP`) or the notebook's ``hk.without_apply_rng(hk.transform(f))``.
Observations are batched (``[B, *obs_shape]``) or single; outputs follow the leading axes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {"relu": nn.relu, "tanh": nn.tanh}


class Network(Protocol):
    """The ``init``/``apply`` pair every policy or value network provides."""

    def init(self, key: jax.Array, obs: jax.Array) -> Any: ...

    def apply(self, params: Any, obs: jax.Array) -> jax.Array: ...


class MLP(nn.Module):
    """Multi-layer perceptron: flatten the observation, ``hidden_sizes`` dense layers, linear head."""

    hidden_sizes: Sequence[int]
    num_outputs: int
    activation: str = "relu"
    head_scale: float = 1.0  # scale of the last layer's initial weights; 0.01 starts near-uniform

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        # Flatten everything but the batch axis, like the notebook's hk.Flatten.
        x = obs if obs.ndim <= 1 else obs.reshape(obs.shape[0], -1)
        x = x.astype(jnp.float32)
        act = ACTIVATIONS[self.activation]
        for size in self.hidden_sizes:
            x = act(nn.Dense(size)(x))
        init = nn.initializers.variance_scaling(self.head_scale**2, "fan_in", "truncated_normal")
        return nn.Dense(self.num_outputs, kernel_init=init)(x)


class Networks(NamedTuple):
    """The agent's networks: a policy producing logits and an optional state-value network."""

    policy: Network
    value: Network | None = None


def make_networks(
    num_actions: int,
    hidden_sizes: Sequence[int] = (20, 20),
    activation: str = "relu",
    with_value: bool = False,
    head_scale: float = 1.0,
) -> Networks:
    """Flax MLP policy (``num_actions`` logits) and, if asked, an MLP value network (1 output)."""
    policy = MLP(tuple(hidden_sizes), num_actions, activation, head_scale)
    value = _Squeezed(MLP(tuple(hidden_sizes), 1, activation)) if with_value else None
    return Networks(policy, value)


class _Squeezed:
    """Wraps a one-output network so that ``apply`` returns ``[B]`` instead of ``[B, 1]``."""

    def __init__(self, net: Network):
        self.net = net

    def init(self, key: jax.Array, obs: jax.Array) -> Any:
        return self.net.init(key, obs)

    def apply(self, params: Any, obs: jax.Array) -> jax.Array:
        return self.net.apply(params, obs)[..., 0]
