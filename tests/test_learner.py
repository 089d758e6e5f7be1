"""Tests of the policy/value networks and of the learner, with Flax and the notebook's Haiku net."""

from __future__ import annotations

import functools

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from reinforce_jax.agent import CATEGORICAL_HEAD_SCALE, GAUSSIAN_HEAD_SCALE, policy_networks
from reinforce_jax.config import ConfigError, make_config
from reinforce_jax.core import Categorical
from reinforce_jax.core.spaces import Box, Discrete
from reinforce_jax.envs import env_spec
from reinforce_jax.learner import Batch
from reinforce_jax.networks import Networks, init_obs_stats, make_networks, value_output
from reinforce_jax.trainers import build_trainer
from reinforce_jax.trainers.common import learner_from_config

OBS_DIM = 4
NUM_ACTIONS = 2


def make_learner(cfg, networks, num_updates=1):
    """The learner a trainer builds from ``cfg`` (a categorical policy over NUM_ACTIONS)."""
    return learner_from_config(cfg, networks, Categorical(NUM_ACTIONS), num_updates)


def make_policy_network(num_actions: int, layers=None) -> hk.Transformed:
    """The notebook's policy network factory (``layers=[20, 20]`` by default)."""
    layers = [20, 20] if layers is None else list(layers)

    def policy_network(obs):
        network = hk.Sequential([hk.Flatten(), hk.nets.MLP(layers + [num_actions])])
        return network(obs)

    return hk.without_apply_rng(hk.transform(policy_network))


def shapes(tree):
    return jax.tree_util.tree_map(lambda x: tuple(x.shape), tree)


def fixed_batch(n: int = 64, seed: int = 0) -> Batch:
    """Action 1 always earns a positive return, action 0 a negative one."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(scale=0.5, size=(n, OBS_DIM)).astype(np.float32)
    actions = (np.arange(n) % 2).astype(np.int32)
    returns = np.where(actions == 1, 10.0, -10.0).astype(np.float32)
    return Batch(jnp.asarray(obs), jnp.asarray(actions), jnp.asarray(returns), jnp.ones(n))


def mean_prob_action1(networks: Networks, params, obs) -> float:
    logits = networks.policy.apply(params["policy"], obs)
    return float(jnp.mean(jax.nn.softmax(logits, axis=-1)[:, 1]))


def max_abs_diff(a, b) -> float:
    diffs = jax.tree_util.tree_map(lambda x, y: jnp.max(jnp.abs(x - y)), a, b)
    return float(max(jax.tree_util.tree_leaves(diffs)))


# --------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------


def test_make_networks_default_hidden_sizes():
    networks = make_networks(num_outputs=NUM_ACTIONS)
    assert networks.value is None
    params = networks.policy.init(jax.random.PRNGKey(0), jnp.ones((3, OBS_DIM)))
    dense = params["params"]
    assert [dense[f"Dense_{i}"]["kernel"].shape for i in range(3)] == [(4, 20), (20, 20), (20, 2)]
    assert [dense[f"Dense_{i}"]["bias"].shape for i in range(3)] == [(20,), (20,), (2,)]
    assert len(dense) == 3
    biases = sorted(tuple(x.shape) for x in jax.tree_util.tree_leaves(params) if x.ndim == 1)
    assert biases == [(2,), (20,), (20,)]
    # Same number of parameters as the notebook's Haiku MLP.
    hk_params = make_policy_network(NUM_ACTIONS).init(jax.random.PRNGKey(0), jnp.ones(OBS_DIM))
    count = lambda t: sum(x.size for x in jax.tree_util.tree_leaves(t))
    assert count(params) == count(hk_params) == 4 * 20 + 20 + 20 * 20 + 20 + 20 * 2 + 2


def test_make_networks_custom_hidden_sizes():
    networks = make_networks(num_outputs=3, hidden_sizes=(8, 16, 4))
    params = networks.policy.init(jax.random.PRNGKey(0), jnp.ones((1, OBS_DIM)))
    layer_shapes = sorted(tuple(x.shape) for x in jax.tree_util.tree_leaves(params) if x.ndim == 2)
    assert layer_shapes == sorted([(4, 8), (8, 16), (16, 4), (4, 3)])


def test_policy_output_shapes():
    networks = make_networks(num_outputs=NUM_ACTIONS)
    params = networks.policy.init(jax.random.PRNGKey(1), jnp.ones((5, OBS_DIM)))
    batched = networks.policy.apply(params, jnp.ones((7, OBS_DIM)))
    assert batched.shape == (7, NUM_ACTIONS)
    assert batched.dtype == jnp.float32
    single = networks.policy.apply(params, jnp.ones(OBS_DIM))
    assert single.shape == (NUM_ACTIONS,)
    # A single observation gives the same logits as the same observation in a batch.
    obs = jax.random.normal(jax.random.PRNGKey(2), (6, OBS_DIM))
    np.testing.assert_allclose(
        np.asarray(networks.policy.apply(params, obs[3])),
        np.asarray(networks.policy.apply(params, obs)[3]),
        rtol=1e-5,
        atol=1e-6,
    )
    # Params initialised with a single observation work on a batch (and vice versa).
    params_single = networks.policy.init(jax.random.PRNGKey(1), jnp.ones(OBS_DIM))
    assert shapes(params_single) == shapes(params)


def test_value_network_output_shape():
    networks = make_networks(num_outputs=NUM_ACTIONS, with_value=True)
    assert networks.value is not None
    params = networks.value.init(jax.random.PRNGKey(0), jnp.ones((3, OBS_DIM)))
    assert networks.value.apply(params, jnp.ones((9, OBS_DIM))).shape == (9,)
    assert networks.value.apply(params, jnp.ones(OBS_DIM)).shape == ()


def test_head_scale_starts_near_uniform():
    networks = make_networks(num_outputs=NUM_ACTIONS, head_scale=0.01)
    obs = jax.random.normal(jax.random.PRNGKey(0), (32, OBS_DIM))
    params = networks.policy.init(jax.random.PRNGKey(0), obs)
    probs = jax.nn.softmax(networks.policy.apply(params, obs), axis=-1)
    np.testing.assert_allclose(np.asarray(probs), 0.5, atol=0.02)


def _policy_params(space, **overrides):
    cfg = make_config("LunarLander-v3", overrides=overrides)
    networks, dist = policy_networks(cfg, space, with_value=True)
    obs = jax.random.normal(jax.random.PRNGKey(1), (64, 8))
    return networks, networks.policy.init(jax.random.PRNGKey(0), obs), obs


def test_head_scale_setting_default_keeps_each_distributions_own_head():
    # head_scale = 0 (the default) is the distribution's own: exactly the parameters of before.
    for space, own in ((Discrete(4), CATEGORICAL_HEAD_SCALE),
                       (Box((-1.0, -1.0), (1.0, 1.0)), GAUSSIAN_HEAD_SCALE)):  # fmt: skip
        _, default, _ = _policy_params(space)
        _, explicit, _ = _policy_params(space, head_scale=own)
        assert jax.tree.all(
            jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), default, explicit)
        )
    assert make_config("LunarLander-v3").head_scale == 0.0


def test_head_scale_setting_starts_a_categorical_policy_near_uniform():
    networks, small, obs = _policy_params(Discrete(4), head_scale=0.01)
    _, usual, _ = _policy_params(Discrete(4))
    probs = jax.nn.softmax(networks.policy.apply(small, obs), axis=-1)
    np.testing.assert_allclose(np.asarray(probs), 0.25, atol=0.005)
    spread = jax.nn.softmax(networks.policy.apply(usual, obs), axis=-1)
    assert float(jnp.abs(spread - 0.25).max()) > 0.05  # the usual head is far from uniform
    # Only the last layer differs, by the factor asked for (same key, same truncated normal draw).
    head = sorted(small["params"])[-1]
    for layer in small["params"]:
        a, b = small["params"][layer]["kernel"], usual["params"][layer]["kernel"]
        np.testing.assert_allclose(a, b * 0.01 if layer == head else b, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("bad", [-0.1, float("nan")])
def test_head_scale_setting_must_be_finite_and_non_negative(bad):
    with pytest.raises(ConfigError, match="head_scale"):
        make_config("LunarLander-v3", overrides={"head_scale": bad})


# --------------------------------------------------------------------------------------------
# The learner
# --------------------------------------------------------------------------------------------


def run_updates(networks: Networks, cfg, num_updates: int = 20):
    learner = make_learner(cfg, networks, num_updates=num_updates)
    batch = fixed_batch()
    state0 = learner.init(jax.random.PRNGKey(0), batch.obs)
    update = jax.jit(learner.update)
    state = state0
    for _ in range(num_updates):
        state, metrics = update(state, batch)
    return batch, state0, state, metrics


@pytest.mark.parametrize("net", ["haiku_notebook", "flax"])
@pytest.mark.parametrize("preset", ["default", "notebook"])
def test_learner_reinforces_the_rewarded_action(net, preset):
    cfg = make_config(preset=preset)
    # Whatever baseline the preset picks, give the learner the networks it needs.
    flax_networks = make_networks(NUM_ACTIONS, with_value=cfg.baseline == "value")
    if net == "haiku_notebook":
        networks = Networks(make_policy_network(NUM_ACTIONS, [20, 20]), flax_networks.value)
    else:
        networks = flax_networks
    batch, state0, state, metrics = run_updates(networks, cfg)

    p0 = mean_prob_action1(networks, state0.params, batch.obs)
    p1 = mean_prob_action1(networks, state.params, batch.obs)
    assert p1 > p0 + 0.02, (p0, p1)
    assert max_abs_diff(state0.params, state.params) > 1e-3
    assert int(state.step) == 20
    for name in ("loss", "policy_loss", "entropy", "grad_norm", "learning_rate"):
        assert np.isfinite(float(metrics[name])), name


def notebook_learn_fn(network: hk.Transformed, optimizer: optax.GradientTransformation):
    """The notebook's ``batched_policy_gradient_loss`` and ``REINFORCE_learn``, hand-written."""

    def compute_weighted_log_prob(action_prob, episode_return):
        return episode_return * jnp.log(action_prob)

    def policy_gradient_loss(action, logits, returns):
        action_prob = jax.nn.softmax(logits)[action]
        return -compute_weighted_log_prob(action_prob, returns)

    def batched_loss(params, obs_batch, action_batch, returns_batch):
        logits_batch = network.apply(params, obs_batch)
        losses = jax.vmap(policy_gradient_loss)(action_batch, logits_batch, returns_batch)
        return jnp.mean(losses)

    def learn(params, optim_state, obs, action, returns):
        loss, grads = jax.value_and_grad(batched_loss)(params, obs, action, returns)
        updates, optim_state = optimizer.update(grads, optim_state)
        return optax.apply_updates(params, updates), optim_state, loss, optax.global_norm(grads)

    return jax.jit(learn)


def test_notebook_config_update_equals_notebook_learn():
    cfg = make_config(preset="notebook")
    assert cfg.learning_rate == 1e-3 and cfg.baseline == "none"
    network = make_policy_network(NUM_ACTIONS, list(cfg.hidden_sizes))
    networks = Networks(policy=network)
    learner = make_learner(cfg, networks, num_updates=10)

    rng = np.random.default_rng(123)
    n = cfg.batch_size
    state = learner.init(jax.random.PRNGKey(0), jnp.ones((1, OBS_DIM)))
    params = state.params["policy"]
    optimizer = optax.adam(1e-3)
    optim_state = optimizer.init(params)
    notebook_learn = notebook_learn_fn(network, optimizer)
    update = jax.jit(learner.update)

    for step in range(3):  # several steps, so Adam's moments (not just signs) are compared
        obs = rng.normal(scale=0.5, size=(n, OBS_DIM)).astype(np.float32)
        action = rng.integers(0, 2, size=n).astype(np.int32)
        # The notebook's memory stores int32 returns of episodes of length <= 500.
        returns = rng.integers(1, 100, size=n).astype(np.int32)

        params, optim_state, nb_loss, nb_grad_norm = notebook_learn(
            params, optim_state, obs, action, returns
        )
        batch = Batch(obs, action, returns.astype(np.float32), np.ones(n, np.float32))
        state, metrics = update(state, batch)

        np.testing.assert_allclose(float(metrics["loss"]), float(nb_loss), rtol=1e-5)
        np.testing.assert_allclose(float(metrics["grad_norm"]), float(nb_grad_norm), rtol=1e-4)
        assert max_abs_diff(state.params["policy"], params) <= 1e-6, step
    assert int(state.step) == 3


def test_value_baseline():
    cfg = make_config(overrides={"baseline": "value"})
    networks = make_networks(NUM_ACTIONS, with_value=True)
    learner = make_learner(cfg, networks, num_updates=5)
    batch = fixed_batch()
    state0 = learner.init(jax.random.PRNGKey(0), batch.obs)
    assert set(state0.params) == {"policy", "value"}
    assert networks.value.apply(state0.params["value"], batch.obs).shape == batch.returns.shape

    update = jax.jit(learner.update)
    state, metrics = update(state0, batch)
    assert "value_loss" in metrics
    values = networks.value.apply(state0.params["value"], batch.obs)
    expected_value_loss = jnp.mean(jnp.square(batch.returns - values))
    np.testing.assert_allclose(float(metrics["value_loss"]), float(expected_value_loss), rtol=1e-5)
    assert max_abs_diff(state0.params["value"], state.params["value"]) > 0.0
    for _ in range(4):
        state, metrics = update(state, batch)
    assert float(metrics["value_loss"]) < float(expected_value_loss)


def test_value_baseline_needs_value_network():
    cfg = make_config(overrides={"baseline": "value"})
    with pytest.raises(ValueError):
        make_learner(cfg, make_networks(NUM_ACTIONS), num_updates=1)


def test_no_value_entry_without_value_baseline():
    cfg = make_config(preset="notebook")
    learner = make_learner(cfg, make_networks(NUM_ACTIONS), num_updates=1)
    state = learner.init(jax.random.PRNGKey(0), jnp.ones((1, OBS_DIM)))
    assert set(state.params) == {"policy"}
    _, metrics = jax.jit(learner.update)(state, fixed_batch(8))
    assert "value_loss" not in metrics


def test_learner_mask_excludes_steps():
    cfg = make_config(preset="notebook")
    networks = make_networks(NUM_ACTIONS)
    learner = make_learner(cfg, networks, num_updates=1)
    batch = fixed_batch(16)
    state = learner.init(jax.random.PRNGKey(0), batch.obs)
    mask = jnp.asarray(np.arange(16) < 10, jnp.float32)
    masked = Batch(batch.obs, batch.actions, batch.returns, mask)
    # Garbage in the masked-out steps must not change the update.
    garbage = Batch(
        batch.obs.at[10:].set(100.0),
        batch.actions,
        batch.returns.at[10:].set(1e6),
        mask,
    )
    update = jax.jit(learner.update)
    s1, m1 = update(state, masked)
    s2, m2 = update(state, garbage)
    np.testing.assert_allclose(float(m1["loss"]), float(m2["loss"]), rtol=1e-6)
    assert max_abs_diff(s1.params, s2.params) <= 1e-7
    # And it equals the update on the unmasked prefix alone.
    prefix = Batch(batch.obs[:10], batch.actions[:10], batch.returns[:10], jnp.ones(10))
    s3, _ = update(state, prefix)
    assert max_abs_diff(s1.params, s3.params) <= 1e-6


def test_value_scale_multiplies_the_value_output_and_is_validated():
    obs = jax.random.normal(jax.random.PRNGKey(2), (5, OBS_DIM))
    plain = make_networks(NUM_ACTIONS, (8,), with_value=True)
    scaled = make_networks(NUM_ACTIONS, (8,), with_value=True, value_scale=100.0)
    params = plain.value.init(jax.random.PRNGKey(3), obs)
    v1, v100 = plain.value.apply(params, obs), scaled.value.apply(params, obs)
    assert v1.shape == (5,) and jnp.abs(v1).max() > 0
    np.testing.assert_allclose(v100, 100.0 * v1, rtol=1e-6)
    with pytest.raises(ConfigError, match="value_scale"):
        make_config("CartPole-v1", overrides={"value_scale": 0.0})


def test_entropy_decay_scales_the_bonus_linearly_to_zero():
    networks = make_networks(NUM_ACTIONS)
    batch = fixed_batch(16)

    def learner(coef: float, decay_steps: int = 0):
        cfg = make_config(overrides={"baseline": "none", "entropy_coef": coef,
                                     "entropy_decay_steps": decay_steps})  # fmt: skip
        # 10 environment steps per update: 40 decay steps are 4 updates.
        return learner_from_config(cfg, networks, Categorical(NUM_ACTIONS), 10, 10)

    decaying = learner(0.5, 40)
    state = decaying.init(jax.random.PRNGKey(0), batch.obs)
    update = jax.jit(decaying.update)
    for step, coef in [(0, 0.5), (2, 0.25), (4, 0.0), (9, 0.0)]:
        at = state._replace(step=jnp.asarray(step, jnp.int32))
        new, metrics = update(at, batch)
        np.testing.assert_allclose(float(metrics["entropy_coef"]), coef, atol=1e-7)
        # The same update as a constant bonus of that size.
        same, _ = jax.jit(learner(coef).update)(at, batch)
        assert max_abs_diff(new.params, same.params) <= 1e-7, step
        # A traced coefficient (a sweep's) decays the same way.
        _, traced = update(at, batch, {"entropy_coef": jnp.asarray(0.2)})
        np.testing.assert_allclose(float(traced["entropy_coef"]), 0.4 * coef, atol=1e-7)
    _, constant = jax.jit(learner(0.5).update)(state, batch)
    assert "entropy_coef" not in constant  # logged only when it changes
    with pytest.raises(ConfigError, match="entropy_decay_steps"):
        make_config(overrides={"entropy_decay_steps": -1})
    notebook = make_config(preset="notebook", overrides={"entropy_decay_steps": 10})
    with pytest.raises(ConfigError, match="entropy_decay_steps"):
        build_trainer(notebook, env_spec("CartPole-v1"))


# --------------------------------------------------------------------------------------------
# value_steps: value-only gradient steps after the joint one
# --------------------------------------------------------------------------------------------


def value_loss(networks: Networks, params, batch: Batch) -> float:
    values = value_output(networks, params, batch.obs)
    return float(jnp.mean(jnp.square(batch.returns - values)))


@pytest.mark.parametrize("obs_norm", [False, True])
def test_value_steps_train_the_value_alone_after_the_joint_step(obs_norm):
    networks = make_networks(NUM_ACTIONS, with_value=True)
    batch = fixed_batch()
    stats = init_obs_stats((OBS_DIM,)) if obs_norm else None
    if obs_norm:  # statistics that change the value net's input
        stats = {**stats, "mean": jnp.full((OBS_DIM,), 0.3), "var": jnp.full((OBS_DIM,), 2.0)}

    def learner(k: int):
        return make_learner(make_config(overrides={"baseline": "value", "value_steps": k}),
                            networks)  # fmt: skip

    plain, extra = learner(0), learner(4)
    key = jax.random.PRNGKey(0)
    s0, sk = plain.init(key, batch.obs, stats), extra.init(key, batch.obs, stats)
    assert s0.value_opt_state is None  # value_steps = 0: no new state, the same arrays
    assert len(jax.tree.leaves(sk)) > len(jax.tree.leaves(s0))
    assert max_abs_diff(s0.params, sk.params) == 0.0
    n0, m0 = jax.jit(plain.update)(s0, batch)
    nk, mk = jax.jit(extra.update)(sk, batch)
    # (a) the policy and the joint optimizer's state are exactly the plain update's
    for a, b in zip(jax.tree.leaves((n0.params["policy"], n0.opt_state, n0.step)),
                    jax.tree.leaves((nk.params["policy"], nk.opt_state, nk.step)),
                    strict=True):  # fmt: skip
        np.testing.assert_array_equal(a, b)
    assert m0.keys() == mk.keys()  # the metrics are the joint step's
    for name in m0:
        np.testing.assert_array_equal(m0[name], mk[name])
    if obs_norm:
        assert max_abs_diff(n0.params["obs_norm"], nk.params["obs_norm"]) == 0.0
    # (b) the value-only steps lower the value loss on that batch further
    before, after0, afterk = (value_loss(networks, s.params, batch) for s in (s0, n0, nk))
    assert afterk < after0 < before
    # the value-only optimizer counted 4 steps; the plain learner carries it through untouched
    counts = [x for x in jax.tree.leaves(nk.value_opt_state) if x.dtype == jnp.int32]
    assert counts and all(int(c) == 4 for c in counts)
    passed, _ = jax.jit(plain.update)(nk, batch)
    for a, b in zip(jax.tree.leaves(passed.value_opt_state), jax.tree.leaves(nk.value_opt_state),
                    strict=True):  # fmt: skip
        np.testing.assert_array_equal(a, b)


def test_value_steps_follow_the_learning_rate_schedule_and_traced_hyperparameters():
    networks = make_networks(NUM_ACTIONS, with_value=True)
    batch = fixed_batch()
    cfg = make_config(overrides={"baseline": "value", "lr_schedule": "linear",
                                 "lr_decay_steps": 20, "value_steps": 3})  # fmt: skip
    dist = Categorical(NUM_ACTIONS)
    # 10 environment steps per update: the step size falls from its peak to 0 over 2 updates.
    extra = learner_from_config(cfg, networks, dist, 10, 10)
    joint_only = learner_from_config(cfg.replace(value_steps=0), networks, dist, 10, 10)
    state = extra.init(jax.random.PRNGKey(1), batch.obs)
    update, update0 = jax.jit(extra.update), jax.jit(joint_only.update)
    state, _ = update(state, batch)
    # Update 2 (half the peak step size): the value-only steps still move the value.
    new, _ = update(state, batch)
    same, _ = update0(state, batch)  # the joint step alone, from the same state
    assert max_abs_diff(new.params["policy"], same.params["policy"]) == 0.0
    assert max_abs_diff(new.params["value"], same.params["value"]) > 1e-3
    # Update 3: both step sizes are 0 (the value-only schedule spans 3 x 2 of its steps; had it
    # spanned 2, update 2's value-only steps would not have moved). optax's schedule is 0 up to
    # rounding at a count of 6 of 6 (about -1e-7 of the peak: XLA divides by multiplying).
    last, _ = update(new, batch)
    assert max_abs_diff(last.params["policy"], new.params["policy"]) == 0.0
    assert max_abs_diff(last.params["value"], new.params["value"]) < 1e-7
    # A traced learning rate (a sweep's) reaches the value-only optimizer too.
    traced = learner_from_config(cfg.replace(lr_schedule="constant"), networks, dist, 10, 10,
                                 traced=True)  # fmt: skip
    state = traced.init(jax.random.PRNGKey(1), batch.obs)
    frozen, _ = jax.jit(traced.update)(state, batch, {"learning_rate": jnp.asarray(0.0)})
    assert max_abs_diff(frozen.params, state.params) == 0.0
    moved, _ = jax.jit(traced.update)(state, batch)
    assert max_abs_diff(moved.params["value"], state.params["value"]) > 0.0


def test_value_steps_need_the_value_baseline_and_are_validated():
    assert make_config().value_steps == 0
    assert make_config(overrides={"value_steps": 2}).value_steps == 2  # baseline = value
    for baseline in ("none", "mean"):
        with pytest.raises(ConfigError, match="value_steps.*baseline = value"):
            make_config(overrides={"baseline": baseline, "value_steps": 2})
    with pytest.raises(ConfigError, match="value_steps"):
        make_config(preset="notebook", overrides={"value_steps": 1})  # the notebook: no baseline
    with pytest.raises(ConfigError, match="value_steps must be a non-negative integer"):
        make_config(overrides={"value_steps": -1})
    with pytest.raises(ValueError, match="value_steps needs baseline='value'"):
        make_learner(make_config(preset="notebook").replace(value_steps=1),
                     make_networks(NUM_ACTIONS))  # fmt: skip


# --------------------------------------------------------------------------------------------
# clip_scope: one gradient norm over both networks, or one per network
# --------------------------------------------------------------------------------------------


def test_clip_each_by_global_norm_cuts_each_network_by_its_own_norm():
    from reinforce_jax.trainers.common import clip_each_by_global_norm

    grads = {"policy": {"w": jnp.asarray([0.3, 0.4])},  # norm 0.5
             "value": {"w": jnp.asarray([30.0, 40.0]), "b": jnp.zeros(3)}}  # norm 50  # fmt: skip
    each = clip_each_by_global_norm(1.0)
    out, _ = each.update(grads, each.init(grads))
    np.testing.assert_allclose(out["policy"]["w"], [0.3, 0.4])  # under the limit: untouched
    np.testing.assert_allclose(out["value"]["w"], [0.6, 0.8], rtol=1e-6)  # cut to norm 1
    # one global norm (about 50) cuts the policy's gradient by the value's scale instead
    glob = optax.clip_by_global_norm(1.0)
    g, _ = glob.update(grads, glob.init(grads))
    assert float(optax.global_norm(g["policy"])) < 0.011


@pytest.mark.parametrize("traced", [False, True])
def test_clip_scope_per_network_reaches_the_joint_optimizer_only(traced):
    from reinforce_jax.trainers.common import make_optimizer

    grads = {"policy": {"w": jnp.asarray([0.3, 0.4])}, "value": {"w": jnp.asarray([30.0, 40.0])}}
    cfg = make_config(overrides={"max_grad_norm": 1.0, "clip_scope": "per_network"})
    opt, _ = make_optimizer(cfg, 10, traced=traced)
    plain, _ = make_optimizer(cfg.replace(max_grad_norm=0.0), 10)
    state, pstate = opt.init(grads), plain.init(grads)
    # Two steps (Adam's first step is sign-like; the second shows the gradient's scale): the
    # per-network clip equals Adam on each network's gradient clipped by hand.
    second = jax.tree.map(lambda x: 0.5 * x, grads)
    for g in (grads, second):
        upd, state = opt.update(g, state)
        by_hand = {k: optax.clip_by_global_norm(1.0).update(v, optax.EmptyState())[0]
                   for k, v in g.items()}  # fmt: skip
        want, pstate = plain.update(by_hand, pstate)
        for a, b in zip(jax.tree.leaves(upd), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6)
    glob, _ = make_optimizer(cfg.replace(clip_scope="global"), 10, traced=traced)
    gs = glob.init(grads)
    for g in (grads, second):
        gupd, gs = glob.update(g, gs)
    assert max_abs_diff(gupd["policy"], upd["policy"]) > 1e-5  # the scope changes the step
    # the value-only optimizer is over one network: it keeps one norm (a dict of layers)
    value_opt, _ = make_optimizer(cfg, 10, traced=traced, per_network=False)
    layers = {"linear": {"w": jnp.asarray([3.0, 4.0])}, "linear_1": {"w": jnp.asarray([0.0])}}
    vupd, _ = value_opt.update(layers, value_opt.init(layers))
    assert jax.tree.structure(vupd) == jax.tree.structure(layers)
    with pytest.raises(ConfigError, match="clip_scope must be one of global, per_network"):
        make_config(overrides={"clip_scope": "layer"})


def test_clip_scope_per_network_trains_with_value_steps():
    networks = make_networks(NUM_ACTIONS, with_value=True)
    batch = fixed_batch()
    cfg = make_config(overrides={"max_grad_norm": 0.5, "clip_scope": "per_network",
                                 "value_steps": 2})  # fmt: skip
    learner = learner_from_config(cfg, networks, Categorical(NUM_ACTIONS), 10)
    state = learner.init(jax.random.PRNGKey(0), batch.obs)
    new, metrics = jax.jit(learner.update)(state, batch)
    assert max_abs_diff(new.params["policy"], state.params["policy"]) > 0.0
    assert value_loss(networks, new.params, batch) < value_loss(networks, state.params, batch)
    assert np.isfinite(float(metrics["loss"]))


# --------------------------------------------------------------------------------------------
# small_dot: tiny dense layers as a multiply and a sum
# --------------------------------------------------------------------------------------------


def _jaxpr_ops(f, *args) -> set[str]:
    return {eqn.primitive.name for eqn in jax.make_jaxpr(f)(*args).jaxpr.eqns}


def test_small_dot_multiplies_and_sums_small_layers_and_keeps_the_product_for_large_ones():
    from reinforce_jax.networks import SMALL_DOT_WORK, small_dot

    dims = (((1,), (0,)), ((), ()))
    rng = np.random.default_rng(0)
    small = (
        rng.normal(size=(4, 20)).astype(np.float32),
        rng.normal(size=(20, 20)).astype(np.float32),
    )
    large = (rng.normal(size=(64, 20)).astype(np.float32), small[1])
    assert small[0].size * 20 <= SMALL_DOT_WORK < large[0].size * 20
    f = lambda x, w: small_dot(x, w, dims)  # noqa: E731
    assert "dot_general" not in _jaxpr_ops(f, *small) and "reduce_sum" in _jaxpr_ops(f, *small)
    assert "dot_general" in _jaxpr_ops(f, *large)
    for x, w in (small, large):
        np.testing.assert_allclose(f(x, w), x @ w, rtol=1e-5, atol=1e-5)
    # per seed under vmap: 4 environments of each of 8 seeds are small layers
    xs, ws = np.stack([small[0]] * 8), np.stack([small[1]] * 8)
    assert "dot_general" not in _jaxpr_ops(jax.vmap(f), xs, ws)
    # the MLP uses it: a CartPole-sized policy on 4 observations has no matrix product
    net = make_networks(NUM_ACTIONS)
    params = net.policy.init(jax.random.PRNGKey(0), jnp.zeros((4, OBS_DIM)))
    assert "dot_general" not in _jaxpr_ops(
        lambda o: net.policy.apply(params, o), jnp.ones((4, OBS_DIM))
    )
    assert "dot_general" in _jaxpr_ops(
        lambda o: net.policy.apply(params, o), jnp.ones((256, OBS_DIM))
    )


# --------------------------------------------------------------------------------------------
# max_kl: a backtracking line search on the policy's step
# --------------------------------------------------------------------------------------------


def _kl_estimate(networks: Networks, old, new, batch: Batch) -> float:
    """Schulman's estimator written out with numpy: mean over the batch of (r - 1) - log r."""
    lo = np.asarray(jax.nn.log_softmax(networks.policy.apply(old["policy"], batch.obs)))
    ln = np.asarray(jax.nn.log_softmax(networks.policy.apply(new["policy"], batch.obs)))
    a = np.asarray(batch.actions)
    log_r = (ln - lo)[np.arange(len(a)), a].astype(np.float64)
    return float(np.mean(np.exp(log_r) - 1.0 - log_r))


@functools.cache  # the unbounded update serves both tests (each bound compiles a program)
def _one_update(max_kl: float, learning_rate: float = 0.05):
    networks = make_networks(NUM_ACTIONS, with_value=True)
    batch = fixed_batch()
    cfg = make_config(overrides={"baseline": "value", "learning_rate": learning_rate,
                                 "max_kl": max_kl})  # fmt: skip
    learner = make_learner(cfg, networks)
    state = learner.init(jax.random.PRNGKey(3), batch.obs)
    new, metrics = jax.jit(learner.update)(state, batch)
    return networks, batch, state, new, metrics


def test_max_kl_takes_the_largest_fraction_of_the_step_within_the_bound():
    networks, batch, s0, full, m_off = _one_update(0.0)
    assert "kl" not in m_off and "kl_fraction" not in m_off  # off: the metrics are as before
    kl_full = _kl_estimate(networks, s0.params, full.params, batch)
    assert kl_full > 1e-4  # a step large enough for the bound below to bite
    bound = kl_full / 8  # between the KL of a quarter step (~1/16) and of a half one (~1/4)
    _, _, _, cut, m = _one_update(bound)
    fraction = float(m["kl_fraction"])
    assert fraction in (0.5, 0.25, 0.125)
    step = lambda f: jax.tree.map(lambda o, n: o + f * (n - o), s0.params, full.params)  # noqa: E731
    assert _kl_estimate(networks, s0.params, step(fraction), batch) <= bound * (1 + 1e-4)
    assert _kl_estimate(networks, s0.params, step(2 * fraction), batch) > bound
    np.testing.assert_allclose(float(m["kl"]), _kl_estimate(networks, s0.params, cut.params, batch),
                               rtol=1e-3)  # fmt: skip
    # the policy moved by that fraction of the optimizer's step; the value took its whole step
    assert max_abs_diff(cut.params["policy"], step(fraction)["policy"]) < 1e-6
    assert max_abs_diff(cut.params["value"], full.params["value"]) == 0.0
    # the joint optimizer's state is the unbounded update's (the direction, not the length)
    assert max_abs_diff(cut.opt_state, full.opt_state) == 0.0


def test_max_kl_skips_a_policy_step_no_fraction_fits_and_keeps_one_that_does():
    _, _, s0, full, _ = _one_update(0.0)
    _, _, _, none, m = _one_update(1e-12)
    assert float(m["kl_fraction"]) == 0.0 and float(m["kl"]) == 0.0
    assert max_abs_diff(none.params["policy"], s0.params["policy"]) == 0.0
    assert max_abs_diff(none.params["value"], full.params["value"]) == 0.0
    _, _, _, whole, m = _one_update(1e6)
    assert float(m["kl_fraction"]) == 1.0
    assert max_abs_diff(whole.params, full.params) < 1e-7


@pytest.mark.parametrize("bad", [-0.01, float("nan"), float("inf")])
def test_max_kl_is_validated(bad):
    with pytest.raises(ConfigError, match="max_kl"):
        make_config(overrides={"max_kl": bad})
