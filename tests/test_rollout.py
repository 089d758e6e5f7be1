"""Rollouts: the host rollout over a vector environment, episode assembly across windows,
truncation bootstraps, and the batch they feed the learner."""

from __future__ import annotations

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from reinforce_jax.agent import make_act
from reinforce_jax.core import Categorical
from reinforce_jax.core.spaces import Discrete
from reinforce_jax.envs.vector import GymnasiumVectorEnv
from reinforce_jax.networks import make_networks, value_output
from reinforce_jax.rollout.trajectory import Rollout, to_batch, to_lambda_batch
from reinforce_jax.rollout.vectorized import EpisodeAssembler, HostRollout


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


def test_lambda_batch_learns_every_step_of_the_window_completed_by_the_value():
    # Two environments, three steps; environment 0's episode ends at step 1, environment 1's runs
    # past the window. V(s_{t+1}) = 10 everywhere, gamma 0.5, lambda 0.5.
    obs = np.arange(6, dtype=np.float32).reshape(3, 2, 1)
    act = np.arange(6, dtype=np.int32).reshape(3, 2)
    rew = np.array([[1, 2], [1, 2], [1, 2]], np.float32)
    ends = np.array([[0, 0], [1, 0], [0, 0]], bool)
    batch = to_lambda_batch(Rollout(obs, act, rew, ends, rew, rew), np.full((3, 2), 10.0), 0.5, 0.5)
    np.testing.assert_array_equal(batch.mask, np.ones(6))  # nothing waits, nothing is padding
    np.testing.assert_array_equal(batch.obs[:, 0], np.arange(6))  # time-major, as to_batch
    np.testing.assert_array_equal(batch.actions, np.arange(6))
    # env 0: G2 = 1 + .5 * 10 = 6 (cut by the window); G1 = 1 (its end); G0 = 1 + .5 (5 + .5)
    # env 1: G2 = 2 + 5 = 7; G1 = 2 + .5 (5 + 3.5) = 6.25; G0 = 2 + .5 (5 + 3.125) = 6.0625
    np.testing.assert_allclose(batch.returns, [1 + 0.5 * 5.5, 6.0625, 1, 6.25, 6, 7])


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


def _agent(obs_dim: int):
    """A small policy and value net for ``obs_dim`` observations: ``(params, act, value, key)``."""
    nets = make_networks(2, (8,), with_value=True)
    key = jax.random.PRNGKey(0)
    params = {"policy": nets.policy.init(key, np.zeros((1, obs_dim))),
              "value": nets.value.init(key, np.zeros((1, obs_dim)))}  # fmt: skip
    value = lambda p, o: value_output(nets, p, o)  # noqa: E731
    return params, make_act(nets, Categorical(2), greedy=False), value, key


def test_truncation_bootstraps_with_the_value_of_the_final_observation():
    params, act, value, key = _agent(1)
    for bootstrap in (True, False):
        envs = GymnasiumVectorEnv("ReinforceJaxFake-v0", 2)
        src = HostRollout(envs, act, 7, 0.9, seed=0, value=value if bootstrap else None)
        window, _ = src.collect(params, key)
        src.close()
        np.testing.assert_array_equal(window.obs[:, 0, 0], [0, 1, 2, 0, 1, 2, 0])
        np.testing.assert_array_equal(window.ends[:, 0], [0, 0, 1, 0, 0, 1, 0])
        assert window.episode_returns == [3.0] * 4 and window.episode_lengths == [3] * 4
        v3 = float(value(params, np.array([[3.0]]))[0])
        expected = 1 + 0.9 * v3 if bootstrap else 1.0
        np.testing.assert_allclose(window.rewards[[2, 5], 0], expected, rtol=1e-6)
        np.testing.assert_array_equal(window.rewards[[0, 1, 3, 4, 6], 0], 1.0)


class _Counter:
    """A functional environment whose observation counts the steps (``[t, mark]``): truncated at
    its limit of 3 steps, or, when ``mark`` is 1, terminated at its second step."""

    env_id, obs_shape, action_space, max_episode_steps = "Counter", (2,), Discrete(2), 3

    def __init__(self, mark: float = 0.0):
        self.mark = mark

    def reset(self, key):
        del key
        return jnp.array([0.0, self.mark]), jnp.array([0.0, self.mark])

    def step(self, key, state, action):
        del key, action
        s = state.at[0].add(1.0)
        return s, s, jnp.float32(1.0), (s[0] >= 2) & (s[1] > 0), s[0] >= 3


def test_jax_rollout_bootstraps_truncated_steps_with_the_final_observation():
    from reinforce_jax.rollout.functional import make_jax_rollout

    params, act, value, key = _agent(2)
    traj = make_jax_rollout(_Counter(), act, 2, 7, 0.9, value)(params, key)
    np.testing.assert_array_equal(traj.obs[:, 0, 0], [0, 1, 2, 0, 1, 2, 0])
    np.testing.assert_array_equal(traj.episode_ends[:, 1], [0, 0, 1, 0, 0, 1, 0])
    v3 = float(value(params, jnp.array([[3.0, 0.0]]))[0])  # the final, not the reset, observation
    np.testing.assert_allclose(traj.rewards[[2, 5], :], 1 + 0.9 * v3, rtol=1e-6)
    np.testing.assert_array_equal(traj.rewards[[0, 1, 3, 4, 6], :], 1.0)
    assert traj.episode_returns[2, 0] == 3.0  # the true sum, never bootstrapped
    plain = make_jax_rollout(_Counter(), act, 2, 7, 0.9, None)(params, key)
    np.testing.assert_array_equal(plain.rewards, 1.0)
    # Terminated episodes (2 steps) end before the limit: nothing to bootstrap.
    ended = make_jax_rollout(_Counter(1.0), act, 2, 7, 0.9, value)(params, key)
    np.testing.assert_array_equal(ended.episode_ends[:, 0], [0, 1, 0, 1, 0, 1, 0])
    np.testing.assert_array_equal(ended.rewards, 1.0)


def test_jax_rollout_draws_the_numbers_of_a_per_step_draw():
    # The rollout draws a window's randomness before its loop; a reference that draws each step's
    # inside the loop, from the same keys (act, environment, reset), must give the same window.
    from reinforce_jax.envs import make_jax_env
    from reinforce_jax.rollout.functional import make_jax_rollout

    env = make_jax_env("CartPole-v1")
    nets = make_networks(2, (8,))
    params = {"policy": nets.policy.init(jax.random.PRNGKey(0), np.zeros((1, 4)))}
    act = make_act(nets, Categorical(2), greedy=False)
    n, steps, key = 3, 60, jax.random.PRNGKey(5)

    def reference(key):
        key, reset_key = jax.random.split(key)
        state, obs = jax.vmap(env.reset)(jax.random.split(reset_key, n))

        def step(carry, step_key):
            state, obs = carry
            act_key, env_key, reset_key = jax.random.split(step_key, 3)
            action = act(params, obs, act_key)
            state, next_obs, reward, term, trunc = jax.vmap(env.step)(
                jax.random.split(env_key, n), state, action
            )
            done = term | trunc
            fresh_state, fresh_obs = jax.vmap(env.reset)(jax.random.split(reset_key, n))
            pick = lambda r, x: jnp.where(done.reshape(done.shape + (1,) * (x.ndim - 1)), r, x)  # noqa: E731
            return (jax.tree.map(pick, fresh_state, state), pick(fresh_obs, next_obs)), (
                obs, action, done)  # fmt: skip

        _, out = jax.lax.scan(step, (state, obs), jax.random.split(key, steps))
        return out

    obs, actions, done = jax.jit(reference)(key)
    traj = jax.jit(make_jax_rollout(env, act, n, steps, 0.99))(params, key)
    assert int(done.sum()) >= 3  # episodes ended and were reset inside the window
    np.testing.assert_array_equal(traj.obs, obs)
    np.testing.assert_array_equal(traj.actions, actions)
    np.testing.assert_array_equal(traj.episode_ends, done)


def test_truncation_bootstrap_setting_gives_the_rollouts_a_value_or_none():
    # Every trainer's rollout bootstraps with ``agent.value`` (the test above: None = no
    # bootstrap), so the setting switches all of them.
    from reinforce_jax.config import make_config
    from reinforce_jax.envs import env_spec
    from reinforce_jax.trainers.common import build_agent

    spec = env_spec("CartPole-v1")
    on = build_agent(make_config(overrides={"baseline": "value"}), spec, 1, 1)
    off = build_agent(make_config(overrides={"baseline": "value", "truncation_bootstrap": False}),
                      spec, 1, 1)  # fmt: skip
    assert on.value is not None and off.value is None
    assert off.networks.value is not None  # the baseline itself is still learned
    none = build_agent(make_config(overrides={"baseline": "none"}), spec, 1, 1)
    assert none.value is None


def test_an_evaluation_played_in_parts_scores_each_episode_as_the_whole_one_does():
    # 40 CartPole episodes (a greedy and a sampled policy) and 12 Pendulum episodes (a sampled
    # Gaussian): played at once, or as episodes 0-19 and 20-39 (0-4 and 5-11), each episode
    # keeps its reset, its actions' noise and its return: CartPole's bit for bit, Pendulum's to
    # float32 rounding (a batch of another size rounds the network's sums differently).
    from reinforce_jax.core import Gaussian
    from reinforce_jax.core.spaces import Box
    from reinforce_jax.envs import make_jax_env
    from reinforce_jax.evaluate import make_jax_evaluate

    cases = []
    nets = make_networks(2, (16,))
    params = {"policy": nets.policy.init(jax.random.PRNGKey(3), jnp.zeros((1, 4)))}
    for greedy in (True, False):
        cases.append(("CartPole-v1", make_act(nets, Categorical(2), greedy), params, 40, 20))
    box = Box((-2.0,), (2.0,))
    nets = make_networks(2, (16,), log_std_init=0.0)
    params = {"policy": nets.policy.init(jax.random.PRNGKey(4), jnp.zeros((1, 3)))}
    cases.append(("Pendulum-v1", make_act(nets, Gaussian(box), False), params, 12, 5))
    for env_id, act, params, n, first in cases:
        env = make_jax_env(env_id)
        key = jax.random.PRNGKey(7)
        whole = jax.jit(make_jax_evaluate(env, act, n))(params, key)
        parts = [jax.jit(make_jax_evaluate(env, act, n, part))(params, key)
                 for part in (range(first), range(first, n))]  # fmt: skip
        if env_id == "CartPole-v1":
            np.testing.assert_array_equal(np.concatenate(parts), whole)
        else:
            np.testing.assert_allclose(np.concatenate(parts), whole, rtol=1e-5)
        assert len(np.unique(np.asarray(whole))) > 1  # the episodes differ: a real check
    with np.testing.assert_raises(ValueError):
        make_jax_evaluate(env, act, n, range(n, n + 1))


def test_the_precheck_total_is_the_least_first_total_that_can_still_pass():
    from reinforce_jax.evaluate import precheck_total

    assert precheck_total(100, 20, 500.0, 500.0) == 20 * 500.0  # CartPole: 20 perfect episodes
    assert precheck_total(100, 20, 475.0, 500.0) == 20 * 375.0
    rng = np.random.default_rng(0)
    for _ in range(2000):  # a necessary condition: every passing evaluation meets it ...
        returns = rng.choice([0.0, 490.0, 500.0], size=10, p=[0.02, 0.08, 0.9])
        if returns.mean() >= 480.0:
            assert returns[:4].sum() >= precheck_total(10, 4, 480.0, 500.0)
    # ... and the least one: the rest at their maximum passes exactly at the total.
    first = np.full(4, precheck_total(10, 4, 480.0, 500.0) / 4)
    assert np.concatenate([first, np.full(6, 500.0)]).mean() == 480.0
