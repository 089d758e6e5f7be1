r"""Policy and value networks, and the observation normaliser that lives with them.

Anything with ``init(key, obs) -> params`` and ``apply(params, obs) -> output`` is a network here:
a Flax linen module (the default :class:`MLP`) or the notebook's ``hk.without_apply_rng(hk.transform(f))``.
Observations are batched (``[B, *obs_shape]``) or single; outputs follow the leading axes.

The agent's parameters are one dict: ``{"policy": ..., "value": ... (learned baseline),
"obs_norm": {"mean", "var", "count"} (observation normalisation)}``. The normaliser's statistics
are not trained; trainers update them with :func:`update_obs_stats` and every consumer of the
parameters (act, evaluate, the learner) sees :math:`\mathrm{clip}((o - \mu)/\sqrt{\sigma^2 +
10^{-8}}, \pm 10)` through :func:`normalize_obs`.
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


# A dense layer with at most this much work (rows x inputs x outputs) multiplies and sums instead
# of calling a matrix product. XLA's CPU backend runs a product as a library call, once per seed
# when vmapped over seeds; inside a rollout's loop, where a CartPole layer sees 4 environments, a
# multiply-and-reduce fuses into one loop and takes half the time (2.5 against 4.9 us a step of a
# 20 x 20 network for 4 seeds), while from 16 environments on the library call is twice as fast.
SMALL_DOT_WORK = 2048


def small_dot(
    lhs: jax.Array,
    rhs: jax.Array,
    dimension_numbers: Any,
    precision: Any = None,
    preferred_element_type: Any = None,
) -> jax.Array:
    """``lax.dot_general`` for a dense layer (``[..., K] x [K, N]``), as a multiply and a sum over
    ``K`` where it has at most :data:`SMALL_DOT_WORK` multiplications."""
    (lhs_c, rhs_c), (lhs_b, rhs_b) = dimension_numbers
    dense = not lhs_b and not rhs_b and rhs.ndim == 2 and tuple(rhs_c) == (0,)
    if dense and tuple(lhs_c) == (lhs.ndim - 1,) and lhs.size * rhs.shape[1] <= SMALL_DOT_WORK:
        return (lhs[..., :, None] * rhs).sum(-2)
    return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                               preferred_element_type=preferred_element_type)  # fmt: skip


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
            x = act(nn.Dense(size, dot_general=small_dot)(x))
        init = nn.initializers.variance_scaling(self.head_scale**2, "fan_in", "truncated_normal")
        return nn.Dense(self.num_outputs, kernel_init=init, dot_general=small_dot)(x)


class GaussianMLP(nn.Module):
    r"""A Gaussian policy's parameters: :math:`[\mu(s), \log\sigma]`, ``2 * action_dim`` outputs.

    The means come from an :class:`MLP` whose last layer starts ``head_scale`` times the usual size
    (0.01: every state starts near the same, centred action); the log standard deviation is one
    learned vector (parameter ``log_std``, starting at ``log_std_init``), the same in every state,
    as in Spinning Up's VPG and Tianshou's REINFORCE.
    """

    hidden_sizes: Sequence[int]
    action_dim: int
    activation: str = "relu"
    head_scale: float = 0.01
    log_std_init: float = -0.5

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        mean = MLP(self.hidden_sizes, self.action_dim, self.activation, self.head_scale)(obs)
        init = nn.initializers.constant(self.log_std_init)
        log_std = self.param("log_std", init, (self.action_dim,), jnp.float32)
        return jnp.concatenate([mean, jnp.broadcast_to(log_std, mean.shape)], axis=-1)


class Networks(NamedTuple):
    """The agent's networks: a policy producing distribution parameters, an optional value net."""

    policy: Network
    value: Network | None = None


def make_networks(
    num_outputs: int,
    hidden_sizes: Sequence[int] = (20, 20),
    activation: str = "relu",
    with_value: bool = False,
    head_scale: float = 1.0,
    log_std_init: float | None = None,
    value_scale: float = 1.0,
) -> Networks:
    """Flax MLP policy (``num_outputs`` = the distribution's parameters, e.g. logits) and, if asked,
    an MLP value network (1 output).

    With ``log_std_init`` the policy is a :class:`GaussianMLP` for a
    :class:`~reinforce_jax.core.distributions.Gaussian` with ``num_outputs`` parameters (means and
    log-stds, ``num_outputs // 2`` of each); its mean head is scaled by ``head_scale`` too.

    The value network's output is multiplied by ``value_scale``: Adam moves each weight by about
    the learning rate per update, so a unit-scale output needs many hundreds of updates to reach
    returns in the hundreds (LunarLander's), and the baseline lags the policy all along.
    """
    if log_std_init is not None:
        if num_outputs % 2:
            raise ValueError(f"a Gaussian policy has an even number of outputs, got {num_outputs}")
        policy: Network = GaussianMLP(
            tuple(hidden_sizes), num_outputs // 2, activation, head_scale, log_std_init
        )
    else:
        policy = MLP(tuple(hidden_sizes), num_outputs, activation, head_scale)
    value = _Squeezed(MLP(tuple(hidden_sizes), 1, activation), value_scale) if with_value else None
    return Networks(policy, value)


class _Squeezed:
    """Wraps a one-output network so that ``apply`` returns ``[B]`` instead of ``[B, 1]``, times
    ``scale``."""

    def __init__(self, net: Network, scale: float = 1.0):
        self.net, self.scale = net, float(scale)

    def init(self, key: jax.Array, obs: jax.Array) -> Any:
        return self.net.init(key, obs)

    def apply(self, params: Any, obs: jax.Array) -> jax.Array:
        out = self.net.apply(params, obs)[..., 0]
        return out if self.scale == 1.0 else out * self.scale


# --- observation normalisation ---------------------------------------------------------------------
def init_obs_stats(obs_shape: Sequence[int]) -> dict[str, jax.Array]:
    """Statistics before any observation: mean 0, variance 1, a tiny prior count (float32)."""
    shape = tuple(obs_shape)
    return {
        "mean": jnp.zeros(shape, jnp.float32),
        "var": jnp.ones(shape, jnp.float32),
        "count": jnp.full((), 1e-4, jnp.float32),  # keeps the first merge well defined
    }


def update_obs_stats(stats: dict[str, jax.Array], obs: jax.Array) -> dict[str, jax.Array]:
    r"""Merge a batch ``[..., *obs_shape]`` into running mean and population variance (Chan et al.).

    .. math::  \mu' = \mu + \delta b / n', \quad
               \sigma'^2 = (\sigma^2 c + s^2 b + \delta^2 c b / n') / n', \quad n' = c + b
    """
    shape = stats["mean"].shape
    x = jnp.asarray(obs, jnp.float32).reshape((-1, *shape))
    b = jnp.float32(x.shape[0])
    b_mean, b_var = x.mean(0), x.var(0)
    count = stats["count"]
    total = count + b
    delta = b_mean - stats["mean"]
    m2 = stats["var"] * count + b_var * b + jnp.square(delta) * count * b / total
    return {"mean": stats["mean"] + delta * b / total, "var": m2 / total, "count": total}


def normalize_obs(stats: dict[str, jax.Array] | None, obs: jax.Array) -> jax.Array:
    r""":math:`\mathrm{clip}((o - \mu) / \sqrt{\sigma^2 + 10^{-8}}, -10, 10)`; float32 ``obs`` if ``stats`` is None."""
    obs = jnp.asarray(obs, jnp.float32)
    if stats is None:
        return obs
    return jnp.clip((obs - stats["mean"]) / jnp.sqrt(stats["var"] + 1e-8), -10.0, 10.0)


def policy_output(networks: Networks, params: dict[str, Any], obs: jax.Array) -> jax.Array:
    """The policy's distribution parameters for ``obs``, normalised when ``params`` hold statistics."""
    return networks.policy.apply(params["policy"], normalize_obs(params.get("obs_norm"), obs))


def value_output(networks: Networks, params: dict[str, Any], obs: jax.Array) -> jax.Array:
    """:math:`V(s)` for ``obs`` (``[B]``), normalised like the policy's input."""
    return networks.value.apply(params["value"], normalize_obs(params.get("obs_norm"), obs))
