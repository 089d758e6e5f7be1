"""The Gaussian action distribution: log-probabilities against references, the squash correction
against a numerical change of variables, entropy, sampling statistics, bounds, shapes."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reinforce_jax.core.distributions import (
    SQUASH_MEAN_MAX,
    Categorical,
    Gaussian,
    for_action_space,
)
from reinforce_jax.core.spaces import Box, Discrete

PENDULUM = Box(low=(-2.0,), high=(2.0,))
LANDER = Box(low=(-1.0, -1.0), high=(1.0, 1.0))
SKEWED = Box(low=(-1.0, 0.0, 2.0), high=(3.0, 1.0, 2.5))  # centres and half-widths differ


def params_for(mu, log_std):
    return jnp.concatenate([jnp.asarray(mu, jnp.float32), jnp.asarray(log_std, jnp.float32)], -1)


def normal_logpdf(x, mu, sigma):
    """Reference: the product of 1-D normal densities, in float64."""
    x, mu, sigma = (np.asarray(v, np.float64) for v in (x, mu, sigma))
    return np.sum(-((x - mu) ** 2) / (2 * sigma**2) - np.log(sigma * math.sqrt(2 * math.pi)), -1)


def test_for_action_space_picks_by_space():
    assert isinstance(for_action_space(Discrete(3)), Categorical)
    g = for_action_space(LANDER)
    assert isinstance(g, Gaussian) and g.bounds == "squash"
    assert g.num_params == 4 and g.action_shape == (2,) and g.action_dtype == jnp.float32
    assert for_action_space(LANDER, "clip").bounds == "clip"


def test_squash_refuses_infinite_bounds_clip_accepts_them():
    inf = Box(low=(-math.inf,), high=(math.inf,))
    with pytest.raises(ValueError, match="infinite bounds.*action_bounds=clip"):
        Gaussian(inf, "squash")
    g = Gaussian(inf, "clip")
    assert float(g.mode(params_for([5.0], [0.0]))[0]) == 5.0
    with pytest.raises(ValueError, match="squash, clip"):
        Gaussian(LANDER, "tanh")


def test_clip_log_prob_matches_reference_density():
    g = Gaussian(SKEWED, "clip")
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(7, 3))
    log_std = rng.uniform(-2, 1, size=(7, 3))
    x = rng.normal(size=(7, 3)) * 3  # outside the bounds too: the unclipped sample's density
    got = g.log_prob(params_for(mu, log_std), x)
    assert got.shape == (7,)
    np.testing.assert_allclose(got, normal_logpdf(x, mu, np.exp(log_std)), rtol=1e-5, atol=1e-4)


def test_squash_log_prob_is_normal_density_minus_log_jacobian():
    """log pi(a) = log N(u) - sum log(h (1 - tanh^2 u)), u = atanh((a - c) / h), in float64."""
    g = Gaussian(SKEWED, "squash")
    rng = np.random.default_rng(1)
    mu_raw = rng.normal(size=(9, 3))
    log_std = rng.uniform(-1.5, 0.5, size=(9, 3))
    u = rng.normal(size=(9, 3)) * 1.5
    low, high = np.array(SKEWED.low), np.array(SKEWED.high)
    c, h = (high + low) / 2, (high - low) / 2
    a = c + h * np.tanh(u)
    mu = SQUASH_MEAN_MAX * np.tanh(mu_raw / SQUASH_MEAN_MAX)  # the bounded pre-tanh mean
    expected = normal_logpdf(u, mu, np.exp(log_std)) - np.sum(np.log(h * (1 - np.tanh(u) ** 2)), -1)
    got = g.log_prob(params_for(mu_raw, log_std), a.astype(np.float32))
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=2e-3)


def test_squash_density_matches_numerical_change_of_variables():
    """The squashed density integrates to 1 over the box and equals N(u) du/da, both numerically."""
    g = Gaussian(PENDULUM, "squash")
    p = params_for([0.4], [-0.3])
    a = np.linspace(-2.0, 2.0, 200_001)[1:-1]
    density = np.exp(np.asarray(g.log_prob(p[None], a[:, None].astype(np.float32)), np.float64))
    assert abs(np.trapezoid(density, a) - 1.0) < 2e-3
    # du/da by finite differences of the inverse map, against the analytic Jacobian's density
    eps = 1e-4
    for a0 in (-1.5, -0.2, 0.0, 0.9, 1.7):
        du_da = (np.arctanh((a0 + eps) / 2) - np.arctanh((a0 - eps) / 2)) / (2 * eps)
        mu = SQUASH_MEAN_MAX * math.tanh(0.4 / SQUASH_MEAN_MAX)
        ref = math.exp(normal_logpdf([np.arctanh(a0 / 2)], [mu], [math.exp(-0.3)])) * du_da
        got = math.exp(float(g.log_prob(p, jnp.array([a0], jnp.float32))))
        assert got == pytest.approx(ref, rel=1e-3)


def test_squashed_log_prob_finite_at_the_bounds():
    g = Gaussian(LANDER, "squash")
    lp = g.log_prob(params_for([0.0, 0.0], [0.0, 0.0]), jnp.array([1.0, -1.0]))
    assert np.isfinite(float(lp))


def test_entropy_is_the_gaussians():
    for bounds in ("squash", "clip"):
        g = Gaussian(SKEWED, bounds)
        log_std = np.array([[-1.0, 0.0, 0.5], [0.2, 0.2, 0.2]])
        got = g.entropy(params_for(np.zeros((2, 3)), log_std))
        ref = np.sum(log_std + 0.5 * np.log(2 * np.pi * np.e), -1)
        np.testing.assert_allclose(got, ref, rtol=1e-6)


def test_entropy_matches_monte_carlo_minus_log_prob():
    g = Gaussian(LANDER, "clip")
    p = params_for([0.3, -0.2], [-0.4, 0.1])
    a = g.sample(jax.random.PRNGKey(0), jnp.broadcast_to(p, (100_000, 4)))
    mc = -float(jnp.mean(g.log_prob(p, a)))
    assert mc == pytest.approx(float(g.entropy(p)), abs=0.02)


@pytest.mark.parametrize("bounds", ["squash", "clip"])
def test_sampling_statistics(bounds):
    """Samples follow N(mu, sigma) before the bounds: moments, and the squash maps them inside."""
    g = Gaussian(SKEWED, bounds)
    mu_raw, log_std = np.array([0.5, -1.0, 0.0]), np.array([-1.0, 0.0, -0.5])
    p = jnp.broadcast_to(params_for(mu_raw, log_std), (200_000, 6))
    a = np.asarray(g.sample(jax.random.PRNGKey(3), p), np.float64)
    assert a.shape == (200_000, 3) and g.sample(jax.random.PRNGKey(3), p).dtype == jnp.float32
    low, high = np.array(SKEWED.low), np.array(SKEWED.high)
    if bounds == "squash":
        assert np.all(a >= low) and np.all(a <= high)
        c, h = (high + low) / 2, (high - low) / 2
        u = np.arctanh(np.clip((a - c) / h, -1 + 1e-6, 1 - 1e-6))
        mu = SQUASH_MEAN_MAX * np.tanh(mu_raw / SQUASH_MEAN_MAX)
    else:
        u, mu = a, mu_raw
    sigma = np.exp(log_std)
    np.testing.assert_allclose(u.mean(0), mu, atol=4 * sigma.max() / math.sqrt(len(u)) + 1e-3)
    np.testing.assert_allclose(u.std(0), sigma, rtol=0.01)


def test_mode_is_squashed_or_clipped_mean():
    sq, cl = Gaussian(PENDULUM, "squash"), Gaussian(PENDULUM, "clip")
    p = params_for([[0.5], [40.0], [-3.0]], [[0.0], [0.0], [0.0]])
    expected = 2 * np.tanh(SQUASH_MEAN_MAX * np.tanh(np.array([0.5, 40.0, -3.0]) / SQUASH_MEAN_MAX))
    np.testing.assert_allclose(sq.mode(p)[:, 0], expected, rtol=1e-6)
    np.testing.assert_allclose(cl.mode(p)[:, 0], [0.5, 2.0, -2.0])


def test_multi_dimensional_box_keeps_its_shape():
    space = Box(low=tuple([-1.0] * 6), high=tuple([1.0] * 6), shape=(2, 3))
    g = Gaussian(space)
    p = jnp.zeros((5, 12))
    a = g.sample(jax.random.PRNGKey(0), p)
    assert a.shape == (5, 2, 3) and g.mode(p).shape == (5, 2, 3)
    assert g.log_prob(p, a).shape == (5,) and g.entropy(p).shape == (5,)


def test_param_width_is_checked():
    with pytest.raises(AssertionError):
        Gaussian(LANDER).mode(jnp.zeros((3, 3)))


def test_log_std_is_clipped_and_gradients_flow():
    g = Gaussian(LANDER, "clip")
    p = params_for([0.0, 0.0], [-50.0, 50.0])
    np.testing.assert_allclose(
        g.entropy(p), np.sum(np.array([-5.0, 2.0]) + 0.5 * np.log(2 * np.pi * np.e)), rtol=1e-5
    )
    grad = jax.grad(lambda q: g.log_prob(q, jnp.array([0.5, -0.5])))(
        params_for([0.1, 0.2], [0.0, -1.0])
    )
    assert np.all(np.isfinite(grad)) and np.all(grad != 0)


def test_sampling_in_two_halves_draws_what_one_call_does():
    # Rollouts draw a window's noise before their loop: noise + sample_from must be sample, and
    # the categorical one must be jax.random.categorical's own draw (the notebook's sampler).
    key = jax.random.PRNGKey(7)
    logits = jax.random.normal(jax.random.PRNGKey(1), (64, 4))
    cat = Categorical(4)
    want = jax.random.categorical(key, logits)
    np.testing.assert_array_equal(cat.sample(key, logits), want)
    np.testing.assert_array_equal(cat.sample_from(logits, cat.noise(key, (64,))), want)
    assert len(set(np.asarray(want).tolist())) > 1  # not a constant
    for space in (PENDULUM, SKEWED):
        for bounds in ("squash", "clip"):
            g = Gaussian(space, bounds)
            params = jax.random.normal(jax.random.PRNGKey(2), (5, 3, g.num_params))
            a = g.sample(key, params)
            np.testing.assert_array_equal(g.sample_from(params, g.noise(key, (5, 3))), a)
            assert a.shape == (5, 3, *space.shape)
            mu, log_std = g._split(params)
            u = mu + jnp.exp(log_std) * jax.random.normal(key, mu.shape)  # the reference draw
            if bounds == "clip":
                np.testing.assert_array_equal(a.reshape(u.shape), u)
