"""envpool as an experience source: its XLA path under jit + scan (a JAX upgrade that breaks the
FFI call fails here), next-step reset semantics, the host adapter's same-step autoreset, and the
carried-window learning maths of ``rollout/pool.py``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reinforce_jax.core.returns import batched_discounted_returns, lambda_returns
from reinforce_jax.envs import env_spec
from reinforce_jax.envs import envpool as pools
from reinforce_jax.errors import ConfigError
from reinforce_jax.rollout.pool import (
    PoolSteps,
    learn_lambda_window,
    learn_window,
    make_pool_evaluate,
    make_pool_rollout,
    reward_to_go,
)

needs_envpool = pytest.mark.skipif(not pools.available(), reason="envpool not installed")


@needs_envpool
def test_xla_step_runs_inside_jit_and_scan_and_resets_on_the_next_step():
    spec = env_spec("CartPole-v1")
    pool = pools.make_pool(spec, 4, seed=0, num_threads=1)
    handle, _, _, step = pool.xla()
    pool.reset()

    @jax.jit
    def run(handle):
        def body(h, _):
            h, (obs, reward, terminated, truncated, info) = step(h, jnp.zeros((4,), jnp.int32))
            return h, (obs, reward, terminated | truncated, info["env_id"])

        return jax.lax.scan(body, handle, None, length=40)

    _, (obs, reward, done, ids) = run(handle)
    obs, reward, done, ids = map(np.asarray, (obs, reward, done, ids))
    assert obs.shape == (40, 4, 4) and np.isfinite(obs).all()
    assert (ids == np.arange(4)).all()  # a synchronous pool answers in environment order
    assert done.any(), "always pushing left ends CartPole within 40 steps"
    t, i = np.argwhere(done)[0]
    assert reward[t, i] == 1.0
    # the next step only resets: reward 0, not done, a fresh start near the origin
    assert reward[t + 1, i] == 0.0 and not done[t + 1, i]
    assert np.abs(obs[t + 1, i]).max() <= 0.05


@needs_envpool
def test_host_adapter_gives_same_step_autoreset():
    envs = pools.EnvpoolVectorEnv("CartPole-v1", 3)
    try:
        obs = envs.reset(seed=1)
        assert obs.shape == (3, 4)
        seen_end = False
        for _ in range(60):
            out = envs.step(np.zeros(3, np.int64))
            done = out.terminated | out.truncated
            assert (out.reward == 1.0).all()  # no reset-only step ever reaches the host trainer
            if done.any():
                seen_end = True
                i = np.flatnonzero(done)[0]
                assert np.abs(out.obs[i]).max() <= 0.05  # already the next episode's start
                assert np.abs(out.final_obs[i, 2]) > 0.2  # the pole had fallen
        assert seen_end
    finally:
        envs.close()


def test_registered_as_a_vector_backend():
    from reinforce_jax.envs.vector import VECTOR_BACKENDS

    assert "envpool" in VECTOR_BACKENDS


@needs_envpool
def test_spec_mismatch_and_unknown_ids_are_refused():
    with pytest.raises(ConfigError, match="no envpool version"):
        pools.make_pool(env_spec("FrozenLake-v1"), 2, 0)
    with pytest.raises(ConfigError, match="no gymnasium arguments"):
        pools.make_pool(env_spec("LunarLander-v3", {"enable_wind": True}), 2, 0)


def test_reward_to_go_is_the_sequential_recursion():
    rng = np.random.default_rng(0)
    rewards = rng.normal(size=(300, 5)).astype(np.float32)
    ends = rng.random((300, 5)) < 0.03
    got, complete = reward_to_go(rewards, ends, 0.99)
    want, want_complete = batched_discounted_returns(rewards, ends, 0.99)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    assert (np.asarray(complete) == np.asarray(want_complete)).all()


def _steps(rewards, ends, pending, next_values=None):
    t, m = rewards.shape
    return PoolSteps(
        jnp.arange(t * m, dtype=jnp.float32).reshape(t, m, 1),
        jnp.zeros((t, m), jnp.int32),
        jnp.asarray(rewards, jnp.float32),
        jnp.asarray(ends),
        jnp.asarray(pending),
        jnp.zeros((t, m), jnp.float32) if next_values is None else jnp.asarray(next_values),
    )


def test_learn_window_learns_each_step_once_when_its_episode_ends():
    # one environment; window 1: steps 0-2 of an episode that ends at step 1 of window 2
    empty = _steps(np.zeros((3, 1)), np.zeros((3, 1), bool), np.zeros((3, 1), bool))
    w1 = _steps(np.ones((3, 1)), np.zeros((3, 1), bool), np.ones((3, 1), bool))
    buf, batch, counts = learn_window(empty, w1, 1.0, 1, batch_size=6)
    assert float(counts["learn_steps"][0]) == 0  # nothing complete yet: carried
    ends = np.array([[False], [True], [False]])
    pending = np.array([[True], [True], [True]])
    w2 = _steps(np.ones((3, 1)), ends, pending)
    buf, batch, counts = learn_window(buf, w2, 1.0, 1, batch_size=6)
    assert float(counts["learn_steps"][0]) == 5  # the whole 5-step episode, now complete
    assert float(counts["learn_episodes"][0]) == 1
    used = np.asarray(batch.mask[0]) > 0
    np.testing.assert_allclose(np.asarray(batch.returns[0])[used], [5, 4, 3, 2, 1])
    # the step after the end is still pending; learned steps are not learned again
    assert np.asarray(buf.pending).sum() == 1
    w3 = _steps(np.ones((3, 1)), np.array([[True], [False], [False]]), np.ones((3, 1), bool))
    _, batch, counts = learn_window(buf, w3, 1.0, 1, batch_size=6)
    assert float(counts["learn_steps"][0]) == 2
    np.testing.assert_allclose(np.asarray(batch.returns[0])[:2], [2, 1])


def test_reset_only_steps_are_never_learned():
    w = _steps(np.array([[1.0], [0.0], [1.0], [1.0]]), np.array([[True], [False], [False], [True]]),
               np.array([[True], [False], [True], [True]]))  # fmt: skip
    empty = _steps(np.zeros((2, 1)), np.zeros((2, 1), bool), np.zeros((2, 1), bool))
    _, batch, counts = learn_window(empty, w, 1.0, 1, batch_size=8)
    assert float(counts["learn_steps"][0]) == 3
    assert float(counts["learn_episodes"][0]) == 2
    used = np.asarray(batch.mask[0]) > 0
    assert 1.0 not in np.asarray(batch.obs[0, :, 0])[used]  # obs index 1 is the reset-only step


def test_lambda_window_learns_every_real_step_at_once_seed_major():
    # Two seeds x two environments, four steps. Environment 1 (seed 0) ends its episode at step 1
    # and resets at step 2 (a reset-only step); the others run on past the window's end.
    rewards = np.array([[1, 2, 3, 4], [1, 2, 3, 4], [0, 2, 3, 4], [1, 2, 3, 4]], np.float32)
    ends = np.zeros((4, 4), bool)
    ends[1, 1] = True
    pending = np.ones((4, 4), bool)
    pending[2, 1] = False
    values = np.random.default_rng(0).normal(0, 3, (4, 4)).astype(np.float32)
    steps = _steps(rewards, ends, pending, values)
    batch, counts = learn_lambda_window(steps, 0.9, 0.8, num_seeds=2)
    want = np.asarray(lambda_returns(rewards, 0.9 * (1.0 - ends), values, 0.8))
    # seed k's rows are its environments' steps, environment by environment... in time order
    assert batch.returns.shape == (2, 8) and batch.obs.shape == (2, 8, 1)
    for k in range(2):
        for j in range(2):
            env = 2 * k + j
            rows = [t * 2 + j for t in range(4)]
            np.testing.assert_allclose(np.asarray(batch.returns[k])[rows], want[:, env], rtol=1e-6)
            np.testing.assert_array_equal(np.asarray(batch.obs[k, rows, 0]), np.arange(4) * 4 + env)
    np.testing.assert_array_equal(np.asarray(counts["learn_steps"]), [7, 8])  # reset-only masked
    np.testing.assert_array_equal(np.asarray(counts["learn_episodes"]), [1, 0])
    np.testing.assert_array_equal(np.asarray(counts["dropped_steps"]), [0, 0])
    assert float(batch.mask[0, 2 * 2 + 1]) == 0.0  # step 2 of environment 1
    # the end cuts the bootstrap: environment 1's step 1 learns its reward alone
    assert float(batch.returns[0, 1 * 2 + 1]) == 2.0


@needs_envpool
def test_rollout_records_next_values_and_bootstraps_truncations_only_when_asked():
    import envpool

    from reinforce_jax.rollout.pool import init_carry

    def act(params, obs, key):  # push left: the pole falls in about 9 steps, after the limit
        return jnp.zeros(obs.shape[:1], jnp.int32)

    def value(params, obs):
        return 100.0 + obs[:, 0]

    got = {}
    for bootstrap in (False, True):  # the same seed: the same episodes
        pool = envpool.make("CartPole-v1", env_type="gymnasium", num_envs=4, batch_size=4,
                            num_threads=1, seed=0, max_episode_steps=5)  # fmt: skip
        handle, _, _, step = pool.xla()
        obs, _ = pool.reset()
        rollout = make_pool_rollout(step, act, 2, 20, 0.99, value, bootstrap=bootstrap)
        keys = jnp.stack([jax.random.PRNGKey(0)] * 2)
        _, _, got[bootstrap], _ = jax.jit(rollout)(handle, init_carry(obs, 0), {}, keys)
        pool.close()
    plain, boot = got[False], got[True]
    # V(s_{t+1}): the value of the observation each step led to, whether or not it bootstraps
    obs = np.asarray(plain.obs)
    np.testing.assert_allclose(np.asarray(plain.next_values)[:-1], 100.0 + obs[1:, :, 0],
                               rtol=1e-6)  # fmt: skip
    np.testing.assert_array_equal(np.asarray(plain.next_values), np.asarray(boot.next_values))
    # Every episode is truncated at 5 steps (then a reset-only step): only ``bootstrap`` adds
    # gamma V(s_T) to those steps' rewards.
    ends, real = np.asarray(plain.ends), np.asarray(plain.pending)
    assert (
        ends.sum() == 4 * 3 and real.sum() == 20 * 4 - 4 * 3
    )  # 3 episodes, 3 reset-only steps each
    np.testing.assert_array_equal(np.asarray(plain.rewards)[real], 1.0)
    added = np.asarray(boot.rewards) - np.asarray(plain.rewards)
    np.testing.assert_allclose(added[ends], 0.99 * np.asarray(plain.next_values)[ends], rtol=1e-6)
    assert (added[~ends] == 0).all()
    with pytest.raises(ValueError, match="needs a value"):
        make_pool_rollout(step, act, 2, 20, 0.99, None, bootstrap=True)


@needs_envpool
@pytest.mark.parametrize("episodes", [3, 7])
def test_evaluation_deals_episodes_to_environments_as_the_host_evaluator_does(episodes):
    # Two seeds x 3 environments: episode k of a seed is its environment k % 3's (k // 3)-th,
    # as envpool plays them when stepped from Python (its reset-only steps counted nowhere).
    def policy(obs):  # a poor, deterministic controller: episodes of different lengths
        return (obs[..., 0] + obs[..., 2] > 0).astype(np.int32)

    spec = env_spec("CartPole-v1")
    pool = pools.make_pool(spec, 6, seed=5, num_threads=1)
    handle, _, _, step = pool.xla()
    obs, _ = pool.reset()
    evaluate = make_pool_evaluate(step, lambda p, o, k: jnp.asarray(policy(o)), 2, 500, episodes)
    _, got = jax.jit(evaluate)(handle, obs, {}, jnp.zeros((2, 2), jnp.uint32))
    pool.close()

    pool = pools.make_pool(spec, 6, seed=5, num_threads=1)
    obs, _ = pool.reset()
    played = [[] for _ in range(6)]
    total, fresh = np.zeros(6), np.zeros(6, bool)
    while min(len(p) for p in played) < -(-episodes // 3):
        obs, reward, terminated, truncated, _ = pool.step(policy(obs))
        total += np.where(fresh, 0.0, reward)
        fresh = (terminated | truncated) & ~fresh
        for i in np.flatnonzero(fresh):
            played[i].append(total[i])
            total[i] = 0.0
    pool.close()
    want = [[played[3 * s + k % 3][k // 3] for k in range(episodes)] for s in range(2)]
    assert len({w for row in want for w in row}) > 2  # the lengths differ: the order matters
    np.testing.assert_array_equal(np.asarray(got), want)


def _episode_stats(step, reset, policy, episodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns and lengths of ``episodes`` episodes of one environment driven by ``policy(obs)``."""
    returns, lengths = [], []
    for e in range(episodes):
        obs, total, n, done = reset(e), 0.0, 0, False
        while not done:
            obs, reward, terminated, truncated = step(policy(obs))
            total, n, done = total + reward, n + 1, terminated or truncated
        returns.append(total)
        lengths.append(n)
    return np.array(returns), np.array(lengths)


@needs_envpool
def test_lunarlander_continuous_steps_like_gymnasiums():
    # Same Box2D, different seeding: no step-by-step comparison across the libraries, so compare
    # the action space, the clipping of out-of-range actions and the score distributions of a
    # random policy and of gymnasium's heuristic pilot (both land or crash within ~100-400 steps).
    import gymnasium as gym
    from gymnasium.envs.box2d.lunar_lander import heuristic

    spec = env_spec("LunarLanderContinuous-v3")
    pool = pools.make_pool(spec, 1, seed=0, num_threads=1)  # checks obs, Box and time limit
    assert pools.action_dtype(spec) == np.float32

    def clipped_twin(actions):  # the same seed stepped with out-of-range and clipped actions
        twin = pools.make_pool(spec, 1, seed=5, num_threads=1)
        twin.reset()
        return [twin.step(np.asarray([a], np.float32))[:2] for a in actions]

    wild = np.random.default_rng(0).uniform(-4, 4, size=(40, 2)).astype(np.float32)
    tame = np.clip(wild, -1, 1)
    for (o1, r1), (o2, r2) in zip(clipped_twin(wild), clipped_twin(tame), strict=True):
        np.testing.assert_array_equal(o1, o2)
        np.testing.assert_array_equal(r1, r2)

    def pool_step(a):
        obs, r, term, trunc, _ = pool.step(np.asarray([a], np.float32))
        return obs[0], float(r[0]), bool(term[0]), bool(trunc[0])

    def pool_reset(_):
        obs, _ = pool.reset()
        return obs[0]

    gym_env = gym.make("LunarLanderContinuous-v3")

    def gym_step(a):
        obs, r, term, trunc, _ = gym_env.step(a)
        return obs, float(r), term, trunc

    def gym_reset(e):
        return gym_env.reset(seed=e)[0]

    rng = np.random.default_rng(1)
    random_policy = lambda obs: rng.uniform(-1, 1, 2).astype(np.float32)  # noqa: E731
    heuristic_policy = lambda obs: np.asarray(heuristic(gym_env, obs), np.float32)  # noqa: E731
    try:
        for policy, episodes in ((random_policy, 40), (heuristic_policy, 20)):
            ours, their = (_episode_stats(s, r, policy, episodes)
                           for s, r in ((pool_step, pool_reset), (gym_step, gym_reset)))  # fmt: skip
            # returns, then lengths: the means agree within 4 standard errors
            for a, b in zip(ours, their, strict=True):
                se = np.sqrt(a.var() / a.size + b.var() / b.size)
                assert abs(a.mean() - b.mean()) <= 4 * se + 1e-6, (a.mean(), b.mean(), se)
    finally:
        pool.close()
        gym_env.close()


@needs_envpool
def test_pools_load_only_their_families_and_envpool_stays_whole_for_users():
    # A fresh interpreter: make_pool and the envpool trainer must not run envpool's __init__
    # (which loads every family, Atari and Jumanji with matplotlib among them), yet a later
    # `import envpool` is the whole package, every family registered.
    import subprocess
    import sys

    code = """
import sys, tempfile
from reinforce_jax.envs import env_spec, envpool as pools
pool = pools.make_pool(env_spec("LunarLander-v3"), 2, 0)
print(pool.reset()[0].shape)
# The envpool trainer too, its chunk program kept in the export cache.
from reinforce_jax.config import make_config
from reinforce_jax.trainers import build_trainer, export_cache
export_cache.set_directory(tempfile.mkdtemp())
cfg = make_config("CartPole-v1", overrides=dict(trainer="envpool", num_envs=2, rollout_steps=10,
                  eval_every=1, eval_episodes=2, total_steps=20, hidden_sizes=(4,)))
events = list(build_trainer(cfg, env_spec("CartPole-v1")).run())
print(sorted(m for m in ("envpool.atari", "envpool.jumanji", "envpool.mujoco") if m in sys.modules))
import envpool
print("Pong-v5" in envpool.list_all_envs(), envpool.make is envpool.registration.make)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:3] == ["(2, 8)", "[]", "True True"]


@needs_envpool
@pytest.mark.parametrize("installed", ["1.2.7", "1.2.6", "1.3.0", "1.2.4"])
def test_an_untested_envpool_release_is_refused_or_left_for_the_host_trainer(
    monkeypatch, installed
):
    # envpool 1.2.6+ (Python 3.12+ wheels only) builds XLA handlers that jaxlib 0.10 refuses to
    # register: pip picked 1.2.7 for a Python 3.12 install before the pin.
    from reinforce_jax.config import make_config
    from reinforce_jax.trainers import pool

    monkeypatch.setattr(pools, "installed_version", lambda: installed)
    spec = env_spec("LunarLander-v3")
    why = pools.unavailable()
    assert f"envpool {installed} is installed" in why and "pip install 'envpool==1.2.5'" in why
    assert not pools.available()
    with pytest.raises(ConfigError, match=f"envpool {installed} is installed"):
        pools.check(spec)
    trainer = pool.build(make_config("LunarLander-v3"), spec)  # the default: auto
    assert trainer.name == "host" and trainer.startup_note == pools.fallback_notice(why)


@needs_envpool
def test_the_tested_envpool_release_is_available(monkeypatch):
    for installed in ("1.2.5", "1.2.5+local"):
        monkeypatch.setattr(pools, "installed_version", lambda v=installed: v)
        assert pools.unavailable() is None
