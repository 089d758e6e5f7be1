"""Saved policies: evaluating any parameters the one way, and the shipped policies."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from helpers import train_events
from reinforce_jax.config import ConfigError, make_config
from reinforce_jax.policies import evaluate_policy, load_pretrained

SMALL = dict(
    trainer="host", num_envs=4, rollout_steps=50, total_steps=1000, eval_every=2, eval_episodes=4
)


def test_evaluate_policy_is_seeded():
    cfg = make_config("CartPole-v1", overrides=SMALL)
    params = jax.tree.map(lambda x: x[0], train_events(cfg)[-1]["done"]["params"])
    a = evaluate_policy(cfg, params, "CartPole-v1", episodes=6, seed=3)
    b = evaluate_policy(cfg, params, "CartPole-v1", episodes=6, seed=3)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (6,) and np.all(a >= 8)
    # Episode k is seeded seed + k whatever the batching: the last 5 of seed 3 are seed 4's.
    np.testing.assert_array_equal(evaluate_policy(cfg, params, "CartPole-v1", 5, seed=4), a[1:])
    s1 = evaluate_policy(cfg, params, "CartPole-v1", 6, seed=3, greedy=False)
    np.testing.assert_array_equal(s1, evaluate_policy(cfg, params, "CartPole-v1", 6, 3, False))


def test_shipped_lunarlander_policy_lands():
    cfg, params = load_pretrained("LunarLander-v3")
    assert cfg.env_id == "LunarLander-v3"
    returns = evaluate_policy(cfg, params, "LunarLander-v3", episodes=20, seed=0, greedy=True)
    assert returns.mean() >= 200, returns
    with pytest.raises(ConfigError, match="no pretrained"):
        load_pretrained("Acrobot-v1")
