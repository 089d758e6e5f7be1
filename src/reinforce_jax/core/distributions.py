r"""Action distributions as values: the policy network outputs their parameters.

A :class:`Distribution` bundles pure functions of the network's output (rlax's and rejax's shape):
``sample(key, params)`` (also in two halves, ``noise(key, batch_shape)`` then
``sample_from(params, noise)``, so that a rollout can draw a whole window's randomness before its
loop), ``mode(params)`` (greedy evaluation), ``log_prob(params, action)`` and
``entropy(params)``; all work on any leading batch axes. :func:`for_action_space` picks one from
an environment's action space, so trainers, rollouts and evaluation never branch on it:
:class:`Categorical` for ``Discrete`` actions, :class:`Gaussian` for ``Box`` actions.
"""

from __future__ import annotations

import math
from typing import Protocol

import chex
import jax
import jax.numpy as jnp
import numpy as np

from reinforce_jax.core.spaces import ActionSpace, Box, Discrete

Array = jax.Array


class Distribution(Protocol):
    """What every action distribution provides."""

    action_shape: tuple[int, ...]  # shape of one action
    action_dtype: jnp.dtype
    num_params: int  # size of the policy network's output

    def sample(self, key: chex.PRNGKey, params: chex.Array) -> Array: ...

    def noise(self, key: chex.PRNGKey, batch_shape: tuple[int, ...]) -> Array: ...

    def sample_from(self, params: chex.Array, noise: chex.Array) -> Array: ...

    def mode(self, params: chex.Array) -> Array: ...

    def log_prob(self, params: chex.Array, action: chex.Array) -> Array: ...

    def entropy(self, params: chex.Array) -> Array: ...


class Categorical:
    r"""Categorical over ``n`` actions with logits :math:`z`: :math:`\pi(a) = \mathrm{softmax}(z)_a`."""

    action_shape: tuple[int, ...] = ()
    action_dtype = jnp.int32

    def __init__(self, n: int = 2):
        self.num_params = n

    def sample(self, key: chex.PRNGKey, logits: chex.Array) -> Array:
        """One action per row of ``logits`` (Gumbel-max, as ``jax.random.categorical``; any
        number of logits)."""
        return self.sample_from(logits, jax.random.gumbel(key, jnp.shape(logits), jnp.float32))

    def noise(self, key: chex.PRNGKey, batch_shape: tuple[int, ...]) -> Array:
        """The randomness of ``sample`` for rows of shape ``batch_shape``: Gumbel(0, 1) noise
        ``[*batch_shape, n]``, drawn as ``jax.random.categorical`` draws it."""
        return jax.random.gumbel(key, (*batch_shape, self.num_params), jnp.float32)

    def sample_from(self, logits: chex.Array, noise: chex.Array) -> Array:
        r""":math:`\arg\max_a (g_a + z_a)` for Gumbel noise :math:`g` from :meth:`noise`."""
        return jnp.argmax(noise + logits, axis=-1)

    def mode(self, logits: chex.Array) -> Array:
        r""":math:`\arg\max_a z_a`."""
        return jnp.argmax(logits, axis=-1)

    def log_prob(self, logits: chex.Array, action: chex.Array) -> Array:
        r""":math:`\log \mathrm{softmax}(z)_a`, via ``log_softmax`` (finite where softmax underflows)."""
        log_probs = jax.nn.log_softmax(logits, axis=-1)
        action = jnp.asarray(action, jnp.int32)
        return jnp.take_along_axis(log_probs, action[..., None], axis=-1)[..., 0]

    def entropy(self, logits: chex.Array) -> Array:
        r""":math:`H = -\sum_a \pi(a) \log \pi(a)` over the last axis."""
        log_probs = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1)


BOUNDS = ("squash", "clip")  # how a Gaussian's actions meet a Box's bounds
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0  # the log-std a Gaussian uses is clipped into this range
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_SQUASH_EDGE = 1.0 - 1e-6  # |tanh u| is clipped below this before atanh (|u| <= 7.25)
SQUASH_MEAN_MAX = 3.0  # squash: the pre-tanh mean is 3 tanh(mu / 3), so |mean| < 3 (tanh 3 = 0.995)


class Gaussian:
    r"""Diagonal Gaussian over a ``Box`` of ``d = prod(shape)`` dimensions.

    Parameters: the last axis holds ``2d`` numbers, the means :math:`\mu` then the log standard
    deviations :math:`\log\sigma` (clipped into ``[LOG_STD_MIN, LOG_STD_MAX]``). The policy
    network (:func:`~reinforce_jax.networks.make_networks` with ``log_std_init``) outputs
    :math:`\mu(s)` and repeats one learned, state-independent :math:`\log\sigma` for every state.
    The pre-bound sample is :math:`u = \mu + \sigma \odot \epsilon`, :math:`\epsilon \sim
    \mathcal N(0, I)`, with

    .. math::  \log \mathcal N(u; \mu, \sigma) = -\sum_i \Big[\frac{(u_i - \mu_i)^2}{2\sigma_i^2}
               + \log\sigma_i + \tfrac12 \log 2\pi\Big].

    ``bounds="squash"`` (needs finite bounds): the action is :math:`a = c + h \odot \tanh u` with
    :math:`c = (\mathrm{high} + \mathrm{low})/2`, :math:`h = (\mathrm{high} - \mathrm{low})/2`,
    always inside the box, and by the change of variables

    .. math::  \log \pi(a) = \log \mathcal N(u; \mu, \sigma) - \sum_i \log\big(h_i (1 -
               \tanh^2 u_i)\big), \quad u = \operatorname{atanh}((a - c)/h),

    with :math:`\log(1 - \tanh^2 u) = 2(\log 2 - u - \mathrm{softplus}(-2u))` (stable for large
    :math:`|u|`); :math:`|(a-c)/h|` is clipped below :math:`1 - 10^{-6}` before the atanh. The mode
    is :math:`c + h \odot \tanh \mu`. Rollouts store the action the environment received, so
    :math:`u` is recovered by the atanh, and float32 ``tanh`` rounds to exactly 1 beyond
    :math:`|u| \approx 9`, losing :math:`u`; unchecked, the mean then drifts without bound (measured
    on Pendulum: :math:`|\mu|` in the thousands, returns collapsing). So here the network's mean
    output :math:`m` enters as :math:`\mu = 3 \tanh(m / 3)` (``SQUASH_MEAN_MAX``): the mode still
    reaches 99.5% of the bound and samples stay where the atanh recovers them. The Jacobian term
    does not depend on the parameters, so the policy gradient is the Gaussian's at :math:`u`.

    ``bounds="clip"``: the action is :math:`u` itself and :math:`\log\pi(a) = \log\mathcal N(a;
    \mu, \sigma)` of the unclipped sample; the environment clips it into the box when stepping
    (the JAX-native environments clip, and ``make_gym_env`` wraps gymnasium Box environments in a
    clipping wrapper). The mode is :math:`\mathrm{clip}(\mu, \mathrm{low}, \mathrm{high})`.

    ``entropy`` is the Gaussian's, :math:`H = \sum_i (\log\sigma_i + \tfrac12 \log 2\pi e)`,
    in both cases: the squashed distribution's entropy has no closed form, and this one is what the
    entropy bonus can steer (the log-std).
    """

    action_dtype = jnp.float32

    def __init__(self, space: Box, bounds: str = "squash"):
        if bounds not in BOUNDS:
            raise ValueError(f"Gaussian bounds must be one of {', '.join(BOUNDS)}, got {bounds!r}")
        low = np.asarray(space.low, np.float32).reshape(-1)
        high = np.asarray(space.high, np.float32).reshape(-1)
        if bounds == "squash" and not space.bounded:
            raise ValueError(
                "its Box action space has infinite bounds, which squashing cannot map onto; "
                "use action_bounds=clip"
            )
        if np.any(low > high):
            raise ValueError("its Box action space has low > high")
        self.action_shape = tuple(space.shape)
        self.dim = int(np.prod(self.action_shape, dtype=np.int64))
        if self.dim != low.size:
            raise ValueError(f"Box bounds have {low.size} values for shape {self.action_shape}")
        self.num_params = 2 * self.dim
        self.bounds = bounds
        self.low, self.high = low, high
        self.center = (high + low) / 2 if bounds == "squash" else np.zeros_like(low)
        self.half = (high - low) / 2 if bounds == "squash" else np.ones_like(low)

    # -- helpers ----------------------------------------------------------------------------------
    def _split(self, params: chex.Array) -> tuple[Array, Array]:
        """``(mu, log_sigma)``, each ``[..., d]``, from parameters ``[..., 2d]``."""
        chex.assert_axis_dimension(params, -1, self.num_params)
        mu, log_std = params[..., : self.dim], params[..., self.dim :]
        if self.bounds == "squash":  # keeps u where float32 tanh can be inverted (see the class)
            mu = SQUASH_MEAN_MAX * jnp.tanh(mu / SQUASH_MEAN_MAX)
        return mu, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)

    def _flat(self, action: chex.Array) -> Array:
        """``[..., *action_shape]`` as ``[..., d]`` (leading axes broadcast against the params')."""
        a = jnp.asarray(action, jnp.float32)
        chex.assert_equal(a.shape[a.ndim - len(self.action_shape) :], self.action_shape)
        return a.reshape((*a.shape[: a.ndim - len(self.action_shape)], self.dim))

    def _shaped(self, flat: Array) -> Array:
        return flat.reshape((*flat.shape[:-1], *self.action_shape))

    @staticmethod
    def _normal_log_prob(u: Array, mu: Array, log_std: Array) -> Array:
        z = (u - mu) * jnp.exp(-log_std)
        return -jnp.sum(0.5 * jnp.square(z) + log_std + _HALF_LOG_2PI, axis=-1)

    # -- the distribution -------------------------------------------------------------------------
    def sample(self, key: chex.PRNGKey, params: chex.Array) -> Array:
        """One action per row of ``params``: ``[..., *action_shape]`` float32."""
        return self.sample_from(params, self.noise(key, params.shape[:-1]))

    def noise(self, key: chex.PRNGKey, batch_shape: tuple[int, ...]) -> Array:
        """The randomness of ``sample`` for rows of shape ``batch_shape``: standard normal
        ``[*batch_shape, d]``."""
        return jax.random.normal(key, (*batch_shape, self.dim), jnp.float32)

    def sample_from(self, params: chex.Array, noise: chex.Array) -> Array:
        r""":math:`\mu + \sigma \odot \epsilon`, bounded, for ``noise`` :math:`\epsilon` from
        :meth:`noise`."""
        mu, log_std = self._split(params)
        u = mu + jnp.exp(log_std) * noise
        if self.bounds == "squash":  # the clip only removes float32 rounding past the bounds
            u = jnp.clip(self.center + self.half * jnp.tanh(u), self.low, self.high)
        return self._shaped(u)

    def mode(self, params: chex.Array) -> Array:
        r""":math:`c + h \tanh\mu` (squash) or :math:`\mathrm{clip}(\mu, \mathrm{low}, \mathrm{high})`."""
        mu, _ = self._split(params)
        if self.bounds == "squash":
            a = jnp.clip(self.center + self.half * jnp.tanh(mu), self.low, self.high)
        else:
            a = jnp.clip(mu, self.low, self.high)
        return self._shaped(a)

    def log_prob(self, params: chex.Array, action: chex.Array) -> Array:
        r""":math:`\log \pi(a)` for ``action [..., *action_shape]``; one value per row."""
        mu, log_std = self._split(params)
        a = self._flat(action)
        if self.bounds == "clip":
            return self._normal_log_prob(a, mu, log_std)
        y = jnp.clip((a - self.center) / self.half, -_SQUASH_EDGE, _SQUASH_EDGE)
        u = jnp.arctanh(y)
        log_det = jnp.log(self.half) + 2.0 * (math.log(2.0) - u - jax.nn.softplus(-2.0 * u))
        return self._normal_log_prob(u, mu, log_std) - jnp.sum(log_det, axis=-1)

    def entropy(self, params: chex.Array) -> Array:
        r""":math:`\sum_i (\log\sigma_i + \tfrac12\log 2\pi e)` (the Gaussian before the bounds)."""
        _, log_std = self._split(params)
        return jnp.sum(log_std + _HALF_LOG_2PI + 0.5, axis=-1)


def for_action_space(space: ActionSpace, bounds: str = "squash") -> Distribution:
    """The distribution a policy over ``space`` uses; ``bounds`` (squash | clip) for a ``Box``.

    Raises ``ValueError`` (one line) for a space no distribution fits.
    """
    if isinstance(space, Discrete):
        return Categorical(space.n)
    if isinstance(space, Box):
        return Gaussian(space, bounds)
    raise ValueError(f"no action distribution for a {type(space).__name__} action space yet")
