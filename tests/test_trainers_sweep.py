"""Sweeps: grids become as few programs as possible, and traced settings act as the constants do."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from reinforce_jax.config import ConfigError
from reinforce_jax.envs import env_spec
from reinforce_jax.envs import envpool as pools
from reinforce_jax.trainers import build_trainer
from reinforce_jax.trainers.events import Done, EvalRows, TrainRows
from reinforce_jax.trainers.pool import PoolTrainer
from reinforce_jax.trainers.sweep import build_sweep, expand_grid, plan_sweep

needs_envpool = pytest.mark.skipif(not pools.available(), reason="envpool not installed")

# One update per run: a traced setting must then give the plain run's parameters (to float
# rounding; later updates amplify rounding, so only the first update can be compared).
ONE_UPDATE = dict(num_envs=4, rollout_steps=50, eval_every=1, total_steps=200, eval_episodes=2,
                  hidden_sizes=(8,), num_seeds=1)  # fmt: skip


def final_params(trainer) -> list:
    done = [e for e in trainer.run() if isinstance(e, Done)][0]
    return done.params


def test_grid_is_every_combination_first_key_slowest():
    combos = expand_grid({"learning_rate": [0.1, 0.2], "entropy_coef": [0.0, 0.5, 1.0]})
    assert len(combos) == 6
    assert combos[0] == {"learning_rate": 0.1, "entropy_coef": 0.0}
    assert combos[3] == {"learning_rate": 0.2, "entropy_coef": 0.0}


@pytest.mark.parametrize(
    "grid, needle",
    [
        ({"seed": [1, 2]}, "seed"),
        ({"env_id": ["Acrobot-v1"]}, "env_id"),
        ({"no_such": [1]}, "not a config field"),
        ({"learning_rate": [0.1, 0.1]}, "repeated"),
        ({"learning_rate": [0.1, -1.0]}, "configuration 1"),
    ],
)
def test_bad_grids_are_refused(grid, needle):
    with pytest.raises(ConfigError, match=needle):
        plan_sweep("CartPole-v1", "default", {}, grid)


def test_traced_settings_share_one_program_structural_ones_split():
    plan = plan_sweep("CartPole-v1", "default", {"num_seeds": 3},
                      {"learning_rate": [0.01, 0.03], "gamma": [0.9, 0.99]})  # fmt: skip
    assert len(plan.configs) == 4 and len(plan.groups) == 1
    assert plan.groups[0].traced == ("learning_rate", "gamma")
    assert plan.groups[0].cfg.num_seeds == 12
    plan = plan_sweep("CartPole-v1", "default", {},
                      {"hidden_sizes": [(8,), (16,)], "entropy_coef": [0.0, 0.1]})  # fmt: skip
    assert [g.config_ids for g in plan.groups] == [[0, 1], [2, 3]]
    plan = plan_sweep("CartPole-v1", "default", {}, {"max_grad_norm": [0.0, 0.5, 1.0]})
    assert [g.config_ids for g in plan.groups] == [[0], [1, 2]]  # clipping on/off is structural
    assert plan.groups[0].traced == () and plan.groups[1].traced == ("max_grad_norm",)
    # the clip's scope is structural (a different transformation), its norm still traced
    plan = plan_sweep("CartPole-v1", "default", {"max_grad_norm": 0.5},
                      {"clip_scope": ["global", "per_network"], "max_grad_norm": [0.5, 1.0]})  # fmt: skip
    assert [g.config_ids for g in plan.groups] == [[0, 1], [2, 3]]
    assert [g.cfg.clip_scope for g in plan.groups] == ["global", "per_network"]
    assert all(g.traced == ("max_grad_norm",) for g in plan.groups)


def test_sweep_refuses_environments_no_program_can_batch():
    # LunarLander with wind has neither a JAX-native version nor an envpool twin: host only.
    with pytest.raises(ConfigError, match="compiled or the envpool"):
        plan_sweep("LunarLander-v3", "default", {"env_args": {"enable_wind": True}},
                   {"learning_rate": [0.001, 0.003]})  # fmt: skip
    with pytest.raises(ConfigError, match="'host' trainer"):
        plan_sweep("CartPole-v1", "default", {"trainer": "host"}, {"learning_rate": [0.1]})


def test_a_compiled_sweep_refuses_td_lambda_returns():
    # The compiled trainer has Monte-Carlo returns only: a swept return_lambda must not be
    # silently ignored (the sweep builds its trainers directly, not through build_trainer).
    plan = plan_sweep("CartPole-v1", "default", {"baseline": "value"},
                      {"return_lambda": [1.0, 0.9]})  # fmt: skip
    assert plan.trainer == "compiled" and len(plan.groups) == 2
    with pytest.raises(ConfigError, match="return_lambda"):
        build_sweep(plan, env_spec("CartPole-v1"))


@needs_envpool
def test_lunarlander_sweeps_on_envpool_with_gamma_structural():
    plan = plan_sweep("LunarLander-v3", "default", {},
                      {"learning_rate": [0.001, 0.003], "gamma": [0.99, 0.98]})  # fmt: skip
    assert plan.trainer == "envpool"
    assert [g.config_ids for g in plan.groups] == [[0, 2], [1, 3]]  # one program per gamma
    assert all(g.traced == ("learning_rate",) for g in plan.groups)
    assert [g.cfg.gamma for g in plan.groups] == [0.99, 0.98]


@needs_envpool
def test_an_envpool_sweep_gives_each_row_its_own_traced_value():
    # CartPole on envpool: rows are configurations x seeds in one pool. Row 0 steps the same
    # environments (the pool's first) from the same key as a plain run of its configuration,
    # so it must match that run to float rounding; the logged learning rate is each row's own.
    small = {**ONE_UPDATE, "trainer": "envpool", "lr_schedule": "linear"}
    plan = plan_sweep("CartPole-v1", "default", small, {"learning_rate": [0.001, 0.1]})
    (trainer,) = build_sweep(plan, env_spec("CartPole-v1"))
    assert isinstance(trainer, PoolTrainer) and trainer.rows == [
        {"config": 0, "seed": 0}, {"config": 1, "seed": 0}]  # fmt: skip
    events = list(trainer.run())
    rates = {r["config"]: r["learning_rate"] for e in events if isinstance(e, TrainRows)
             for r in e.rows}  # fmt: skip
    assert rates[1] / rates[0] == pytest.approx(100.0, rel=1e-5)
    evals = [r for e in events if isinstance(e, EvalRows) for r in e.rows]
    assert {(r["config"], r["seed"]) for r in evals} == {(0, 0), (1, 0)}
    swept = [e for e in events if isinstance(e, Done)][0].params
    plain = final_params(build_trainer(plan.configs[0], env_spec("CartPole-v1")))
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(swept), strict=True):
        np.testing.assert_allclose(np.asarray(b)[0], np.asarray(a)[0], rtol=0, atol=2e-6)
    w = swept["policy"]["params"]["Dense_0"]["kernel"]
    assert not np.allclose(np.asarray(w)[0], np.asarray(w)[1])


@pytest.mark.parametrize(
    "grid",
    [
        {"learning_rate": [0.002, 0.05]},
        {"entropy_coef": [0.0, 0.5], "gamma": [0.5]},
        {"value_coef": [0.1, 2.0], "max_grad_norm": [0.001]},
    ],
)
def test_each_traced_setting_acts_as_the_plain_runs_constant(grid):
    plan = plan_sweep("CartPole-v1", "default", {**ONE_UPDATE, "lr_schedule": "linear"}, grid)
    (trainer,) = build_sweep(plan, env_spec("CartPole-v1"))
    swept = final_params(trainer)
    for i, row in enumerate(trainer.rows):
        cfg = plan.configs[row["config"]].replace(seed=row["seed"], num_seeds=1)
        plain = final_params(build_trainer(cfg, env_spec("CartPole-v1")))
        for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(swept), strict=True):
            np.testing.assert_allclose(np.asarray(b)[i], np.asarray(a)[0], rtol=0, atol=2e-6)


def test_a_traced_learning_rate_sets_the_first_adam_step():
    # Adam's first step moves every weight by about the learning rate: a hyperparameter that
    # was silently ignored would give the same step for both.
    plan = plan_sweep("CartPole-v1", "default", {**ONE_UPDATE, "num_seeds": 1},
                      {"learning_rate": [0.001, 0.1]})  # fmt: skip
    (trainer,) = build_sweep(plan, env_spec("CartPole-v1"))
    start = jax.device_get(trainer.program.init(
        jax.vmap(jax.random.PRNGKey)(np.array([0, 0])),
        {"learning_rate": np.array([0.001, 0.1], np.float32)}))  # fmt: skip
    after = final_params(trainer)
    w0 = np.asarray(start.learner.params["policy"]["params"]["Dense_0"]["kernel"])
    w1 = np.asarray(after["policy"]["params"]["Dense_0"]["kernel"])
    steps = np.abs(w1 - w0).reshape(2, -1).max(axis=1)
    np.testing.assert_allclose(steps, [0.001, 0.1], rtol=0.05)
