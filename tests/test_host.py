"""The host trainer: events, episode assembly across windows, truncation, seeding, shipped policy."""

from __future__ import annotations

import io

import gymnasium as gym
import jax
import numpy as np
import pytest

from reinforce_jax.config import ConfigError, make_config
from reinforce_jax.envs import env_info
from reinforce_jax.host import (
    EpisodeAssembler,
    HostRollout,
    RunningMeanStd,
    evaluate_policy,
    load_pretrained,
    train_host,
)
from reinforce_jax.policy import make_networks
from reinforce_jax.rollout import Rollout, to_batch
from reinforce_jax.runfiles import load_params_file
from reinforce_jax.session import run_training

SMALL = dict(
    trainer="host", num_envs=4, rollout_steps=50, total_steps=1000, eval_every=2, eval_episodes=4
)
TIMING = ("wall_time", "sps", "rollout_time", "learn_time")


def host_events(**overrides):
    cfg = make_config("CartPole-v1", overrides={**SMALL, **overrides})
    return cfg, list(train_host(cfg, env_info("CartPole-v1")))


def test_events_budget_and_rows():
    cfg, events = host_events()
    train = [r for e in events for r in e.get("train", [])]
    evals = [r for e in events for r in e.get("eval", [])]
    done = events[-1]["done"]
    per_update = cfg.num_envs * cfg.rollout_steps
    assert [r["update"] for r in train] == [1, 2, 3, 4, 5]  # 1000 // 200 updates, never more
    assert [r["env_steps"] for r in train] == [per_update * u for u in range(1, 6)]
    assert [r["update"] for r in evals] == [2, 4, 5]  # every eval_every updates and the last one
    keys = {"seed", "update", "env_steps", "episode_return", "episode_length", "episodes", "loss",
            "policy_loss", "entropy", "value_loss", "grad_norm", "learning_rate", "wall_time", "sps"}  # fmt: skip
    for r in train:
        assert keys <= r.keys()
        assert r["episodes"] > 0 and np.isfinite(r["episode_return"])
        assert 0 < r["learn_steps"] <= per_update * 3
    for r in evals:
        assert r["eval_episodes"] == 4
        assert r["eval_min"] <= r["eval_mean"] <= r["eval_max"] <= 500
        assert r["solved"] == (r["eval_mean"] >= 500)
    assert done["env_steps"] == 1000
    assert set(done["params"]) == {"policy", "value"}
    assert [list(e) for e in events].count(["done"]) == 1


def test_same_seed_identical_other_seed_differs():
    _, a = host_events()
    _, b = host_events()
    _, c = host_events(seed=1)
    rows = lambda ev: [{k: v for k, v in r.items() if k not in TIMING}  # noqa: E731
                       for e in ev for r in e.get("train", []) + e.get("eval", [])]  # fmt: skip
    assert rows(a) == rows(b)
    for x, y in zip(jax.tree.leaves(a[-1]["done"]["params"]),
                    jax.tree.leaves(b[-1]["done"]["params"]), strict=True):  # fmt: skip
        np.testing.assert_array_equal(x, y)
    assert rows(a) != rows(c)


def test_stop_when_solved_and_num_seeds():
    cfg = make_config("CartPole-v1", overrides={**SMALL, "stop_when_solved": True})
    info = env_info("CartPole-v1")
    events = list(train_host(cfg, info.__class__(**{**info.__dict__, "solve_threshold": 0.0})))
    evals = [r for e in events for r in e.get("eval", [])]
    assert len(evals) == 1 and evals[0]["solved"] and evals[0]["update"] == 2
    assert events[-1]["done"]["solved_at"]["0"]["update"] == 2
    with pytest.raises(ConfigError, match="one seed"):
        next(train_host(cfg.replace(num_seeds=2), info))


def test_assembler_carries_cut_episodes_to_the_next_window():
    # Two environments, windows of 4 steps. Env 0 ends an episode at t=1 and is cut after t=3;
    # env 1 runs through both windows and ends at the second window's t=2.
    asm = EpisodeAssembler(num_envs=2, window=4, carry_cap=9, obs_shape=(1,), capacity=16)
    obs = np.arange(8, dtype=np.float32).reshape(4, 2, 1)
    act = np.arange(8, dtype=np.int32).reshape(4, 2)
    rew = np.array([[1, 10], [2, 20], [3, 30], [4, 40]], np.float32)
    ends = np.array([[0, 0], [1, 0], [0, 0], [0, 0]], bool)
    o, a, r, e = asm.assemble(obs, act, rew, ends)
    assert o.shape == (16, 1, 1) and a.shape == r.shape == e.shape == (16, 1)
    # Only env 0's complete episode (rewards 1, 2) is learned from; the cut tails are carried.
    np.testing.assert_array_equal(r[:3, 0], [1, 2, 0])
    np.testing.assert_array_equal(e[:, 0], [False, True] + [False] * 14)
    assert asm.carried() == [2, 4]
    batch = to_batch(Rollout(o, a, r, e, r, r), gamma=0.5)
    np.testing.assert_allclose(batch.returns[:2], [1 + 0.5 * 2, 2])
    np.testing.assert_array_equal(batch.mask, [1, 1] + [0] * 14)

    rew2 = np.array([[5, 50], [6, 60], [7, 70], [8, 80]], np.float32)
    ends2 = np.array([[1, 0], [0, 0], [0, 1], [0, 0]], bool)
    o, a, r, e = asm.assemble(obs + 100, act + 100, rew2, ends2)
    # Env 0: carried 3, 4 then 5 (end); env 1: carried 10..40 then 50, 60, 70 (end). Never cut early.
    np.testing.assert_array_equal(r[:10, 0], [3, 4, 5, 10, 20, 30, 40, 50, 60, 70])
    np.testing.assert_array_equal(np.flatnonzero(e[:, 0]), [2, 9])
    np.testing.assert_array_equal(a[:10, 0], [4, 6, 100, 1, 3, 5, 7, 101, 103, 105])
    np.testing.assert_array_equal(o[:3, 0, 0], [4, 6, 100])  # observations travel with their steps
    assert asm.carried() == [3, 1] and asm.dropped == 0
    batch = to_batch(Rollout(o, a, r, e, r, r), gamma=1.0)
    np.testing.assert_allclose(batch.returns[:3], [12, 9, 5])  # Monte-Carlo over the whole episode
    np.testing.assert_allclose(batch.returns[3], 10 + 20 + 30 + 40 + 50 + 60 + 70)
    np.testing.assert_array_equal(batch.mask, [1] * 10 + [0] * 6)


def test_assembler_defers_what_does_not_fit_and_drops_overlong_tails():
    asm = EpisodeAssembler(num_envs=1, window=4, carry_cap=2, obs_shape=(), capacity=6)
    ones = np.ones((4, 1), np.float32)
    ends = np.array([[1], [0], [1], [1]], bool)  # episodes of 1, 2 and 1 steps
    _, _, r, e = asm.assemble(ones, ones.astype(np.int32), ones * [[1], [2], [3], [4]], ends)
    np.testing.assert_array_equal(np.flatnonzero(e[:, 0]), [0, 2, 3])
    asm2 = EpisodeAssembler(num_envs=1, window=4, carry_cap=3, obs_shape=(), capacity=7)
    for _ in range(2):  # no end for 8 steps: the tail keeps its newest 3 steps
        asm2.assemble(ones, ones.astype(np.int32), ones, np.zeros((4, 1), bool))
    assert asm2.carried() == [3] and asm2.dropped == 5
    # A batch full of waiting episodes: 3 episodes of 4 steps, capacity 7 -> one per update.
    asm3 = EpisodeAssembler(num_envs=3, window=4, carry_cap=3, obs_shape=(), capacity=7)
    full = np.zeros((4, 3), bool)
    full[3] = True
    _, _, r, e = asm3.assemble(np.ones((4, 3)), np.ones((4, 3), np.int32), np.ones((4, 3)), full)
    assert e.sum() == 1 and asm3.queued == 8


class _Fake(gym.Env):
    """Observation [t], reward 1 per step, never terminates (the time limit truncates it)."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([self.t], np.float32), 1.0, False, False, {}


gym.register("ReinforceJaxFake-v0", entry_point=_Fake, max_episode_steps=3)


def test_truncation_bootstraps_with_the_value_of_the_final_observation():
    nets = make_networks(2, (8,), with_value=True)
    key = jax.random.PRNGKey(0)
    params = {"policy": nets.policy.init(key, np.zeros((1, 1))),
              "value": nets.value.init(key, np.zeros((1, 1)))}  # fmt: skip
    for bootstrap in (True, False):
        src = HostRollout("ReinforceJaxFake-v0", nets, 2, 7, 0.9, seed=0, bootstrap_value=bootstrap)
        window, _ = src.collect(params, None, key)
        src.close()
        np.testing.assert_array_equal(window.obs[:, 0, 0], [0, 1, 2, 0, 1, 2, 0])
        np.testing.assert_array_equal(window.ends[:, 0], [0, 0, 1, 0, 0, 1, 0])
        assert window.episode_returns == [3.0] * 4 and window.episode_lengths == [3] * 4
        v3 = float(nets.value.apply(params["value"], np.array([[3.0]]))[0])
        expected = 1 + 0.9 * v3 if bootstrap else 1.0
        np.testing.assert_allclose(window.rewards[[2, 5], 0], expected, rtol=1e-6)
        np.testing.assert_array_equal(window.rewards[[0, 1, 3, 4, 6], 0], 1.0)


def test_running_mean_std_and_obs_norm_in_params():
    rms, rng = RunningMeanStd((3,)), np.random.default_rng(0)
    data = [rng.normal(2.0, 3.0, (n, 3)) for n in (5, 50, 500)]
    for d in data:
        rms.update(d)
    allx = np.concatenate(data)
    np.testing.assert_allclose(rms.mean, allx.mean(0), rtol=1e-4)
    np.testing.assert_allclose(rms.var, allx.var(0), rtol=1e-4)
    _, events = host_events(obs_norm=True)
    norm = events[-1]["done"]["params"]["obs_norm"]
    assert set(norm) == {"mean", "var", "count"} and int(norm["count"]) == 1000


def test_evaluate_policy_is_seeded():
    cfg, events = host_events()
    params = events[-1]["done"]["params"]
    a = evaluate_policy(cfg, params, "CartPole-v1", episodes=6, seed=3)
    b = evaluate_policy(cfg, params, "CartPole-v1", episodes=6, seed=3)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (6,) and np.all(a >= 8)
    # Episode k is seeded seed + k whatever the batching: the last 5 of seed 3 are seed 4's.
    np.testing.assert_array_equal(evaluate_policy(cfg, params, "CartPole-v1", 5, seed=4), a[1:])
    s1 = evaluate_policy(cfg, params, "CartPole-v1", 6, seed=3, greedy=False)
    np.testing.assert_array_equal(s1, evaluate_policy(cfg, params, "CartPole-v1", 6, 3, False))


def test_session_writes_a_host_run(tmp_path):
    cfg = make_config("CartPole-v1", overrides={**SMALL, "obs_norm": True})
    run = run_training(cfg, env_info("CartPole-v1"), str(tmp_path / "run"), out=io.StringIO())
    assert run.read_json("status.json")["status"] == "finished"
    assert len(run.read_jsonl("train.jsonl")) == 5 and len(run.read_jsonl("eval.jsonl")) == 3
    assert set(load_params_file(tmp_path / "run" / "params.msgpack")) == {
        "policy",
        "value",
        "obs_norm",
    }


def test_shipped_lunarlander_policy_lands():
    cfg, params = load_pretrained("LunarLander-v3")
    assert cfg.env_id == "LunarLander-v3"
    returns = evaluate_policy(cfg, params, "LunarLander-v3", episodes=20, seed=0, greedy=True)
    assert returns.mean() >= 200, returns
    with pytest.raises(ConfigError, match="no pretrained"):
        load_pretrained("Acrobot-v1")
