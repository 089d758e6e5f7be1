"""The host trainer: events, budget, seeding, stopping, observation statistics, its run files."""

from __future__ import annotations

import io

import jax
import numpy as np
import pytest

from helpers import spec_for, train_events
from reinforce_jax.app.rundir import load_params_file
from reinforce_jax.app.session import run_training
from reinforce_jax.config import ConfigError, make_config
from reinforce_jax.networks import init_obs_stats, update_obs_stats
from reinforce_jax.trainers import build_trainer

SMALL = dict(
    trainer="host", num_envs=4, rollout_steps=50, total_steps=1000, eval_every=2, eval_episodes=4
)
TIMING = ("wall_time", "sps", "rollout_time", "learn_time")


def host_events(**overrides):
    cfg = make_config("CartPole-v1", overrides={**SMALL, **overrides})
    return cfg, train_events(cfg)


def seed0(params):
    """One seed's parameters (trainers return them with a leading seed axis)."""
    return jax.tree.map(lambda x: x[0], params)


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


def test_td_lambda_learns_every_step_of_each_window_and_repeats_exactly():
    _, a = host_events(return_lambda=0.9)
    _, b = host_events(return_lambda=0.9)
    _, mc = host_events()
    rows = lambda events: [r for e in events for r in e.get("train", [])]  # noqa: E731
    per_update = SMALL["num_envs"] * SMALL["rollout_steps"]
    assert all(r["learn_steps"] == per_update for r in rows(a))  # nothing carried or masked
    assert all(np.isfinite(r["value_loss"]) for r in rows(a))
    assert any(r["learn_steps"] != per_update for r in rows(mc))
    same = lambda x, y: jax.tree.all(jax.tree.map(np.array_equal, x, y))  # noqa: E731
    assert same(a[-1]["done"]["params"], b[-1]["done"]["params"])
    assert not same(a[-1]["done"]["params"], mc[-1]["done"]["params"])


def test_stop_when_solved_and_num_seeds():
    cfg = make_config("CartPole-v1", overrides={**SMALL, "stop_when_solved": True})
    events = train_events(cfg, threshold=0.0)
    evals = [r for e in events for r in e.get("eval", [])]
    assert len(evals) == 1 and evals[0]["solved"] and evals[0]["update"] == 2
    assert events[-1]["done"]["solved_at"]["0"]["update"] == 2
    with pytest.raises(ConfigError, match="one seed"):
        build_trainer(cfg.replace(num_seeds=2), spec_for("CartPole-v1"))


def test_running_obs_stats_and_obs_norm_in_params():
    stats, rng = init_obs_stats((3,)), np.random.default_rng(0)
    data = [rng.normal(2.0, 3.0, (n, 3)) for n in (5, 50, 500)]
    for d in data:
        stats = update_obs_stats(stats, d)
    allx = np.concatenate(data)
    np.testing.assert_allclose(stats["mean"], allx.mean(0), rtol=1e-4)
    np.testing.assert_allclose(stats["var"], allx.var(0), rtol=1e-4)
    _, events = host_events(obs_norm=True)
    norm = seed0(events[-1]["done"]["params"])["obs_norm"]
    assert set(norm) == {"mean", "var", "count"} and int(norm["count"]) == 1000


def test_session_writes_a_host_run(tmp_path):
    cfg = make_config("CartPole-v1", overrides={**SMALL, "obs_norm": True})
    run = run_training(cfg, spec_for("CartPole-v1"), str(tmp_path / "run"), out=io.StringIO())
    assert run.read_json("status.json")["status"] == "finished"
    assert len(run.read_jsonl("train.jsonl")) == 5 and len(run.read_jsonl("eval.jsonl")) == 3
    assert set(load_params_file(tmp_path / "run" / "params.msgpack")) == {
        "policy",
        "value",
        "obs_norm",
    }
