"""Shared harness for the parity tests of our JAX environments against gymnasium's originals.

``tests/test_envs_*.py`` import it as ``from envparity import ...`` (pytest puts ``tests/`` on
``sys.path``). Every helper asserts as it goes and takes its tolerances from the caller, so each
test keeps its own numbers; the helpers only remove the repeated plumbing:

- :func:`run_parity`: step gymnasium and our env side by side over several episodes, comparing
  every output at every step (observations, rewards, ``terminated``, ``truncated``, time limit);
- :func:`assert_transitions_match`: single transitions from hand-picked states;
- :func:`step_batch`, :func:`gym_unwrapped`, :func:`gym_step_from`: batches of single transitions
  (float32 or, under x64, float64) and gymnasium's transition from a given state;
- :func:`assert_truncates_exactly_at`: a scanned episode never terminates and truncates on time;
- :func:`batch_reset`, :func:`assert_uniform_in`: reset shapes, dtypes and ranges;
- :func:`assert_vmap_step_matches_single_steps`: ``jit(vmap(step))`` equals single steps.

Reward tolerances follow one convention: ``reward_rtol`` and ``reward_atol`` both ``None`` means
the rewards must be equal exactly; otherwise they are compared with ``assert_allclose`` (a ``None``
tolerance counts as 0).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

KEY = jax.random.PRNGKey(0)  # the step key: every environment tested here is deterministic
EPISODE_KEY = jax.random.PRNGKey(3)  # the reset key of assert_truncates_exactly_at


class Step(NamedTuple):
    """What our ``env.step`` returns (one transition, or a batch of them)."""

    state: Any
    obs: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array


class ParityCounts(NamedTuple):
    """How the episodes of :func:`run_parity` ended (gymnasium and ours agreed at every step)."""

    truncations: int
    terminations: int
    final_rewards: list[float]  # our rewards on the terminating steps

    @property
    def episodes(self) -> int:
        return self.truncations + self.terminations


# ``check_step(ours, gym_obs, gym_state, where)``: environment-specific checks of one transition,
# given gymnasium's observation and its (float64) state after the same step.
StepCheck = Callable[[Step, np.ndarray, np.ndarray, str], None]


def time_limit(env: gym.Env) -> gym.wrappers.TimeLimit:
    """The TimeLimit wrapper inside ``gym.make``'s stack (it holds ``_elapsed_steps``)."""
    e = env
    while not isinstance(e, gym.wrappers.TimeLimit):
        e = e.env
    return e


def jax_action(action: Any) -> jax.Array:
    """A policy's action as our env takes it: ints as int32, arrays unchanged."""
    if isinstance(action, int | np.integer):
        return jnp.int32(action)
    return jnp.asarray(action)


def assert_reward(
    ours: Any, theirs: float, reward_rtol: float | None, reward_atol: float | None, where: str = ""
) -> None:
    """Our reward equals gymnasium's: exactly, or within the tolerances (see the module doc)."""
    if reward_rtol is None and reward_atol is None:
        assert float(ours) == theirs, where
    else:
        np.testing.assert_allclose(
            float(ours), theirs, rtol=reward_rtol or 0.0, atol=reward_atol or 0.0, err_msg=where
        )


def physics_is_obs(ours: Step, gym_obs: np.ndarray, gym_state: np.ndarray, where: str) -> None:
    """A :data:`StepCheck`: our state is exactly our observation (MountainCar and its kin)."""
    np.testing.assert_array_equal(
        np.asarray(ours.state.physics), np.asarray(ours.obs), err_msg=where
    )


def run_parity(
    env: Any,
    jax_step: Callable,
    policy: Callable[[np.ndarray, np.random.Generator], Any],
    num_steps: int,
    seed: int,
    *,
    max_episode_steps: int,
    sync: Literal["reset", "step", "from_gym"],
    obs_atol: float,
    obs_rtol: float = 0.0,
    reward_rtol: float | None = None,
    reward_atol: float | None = None,
    check_step: StepCheck | None = None,
    state_cls: Callable | None = None,
) -> ParityCounts:
    """Step gymnasium's ``env.env_id`` and our ``env`` (through ``jax_step``) side by side.

    Both are fed ``policy(obs, rng)``'s action for ``num_steps`` steps, starting new episodes as
    they end. ``sync`` says how the two are kept on the same trajectory:

    - ``"reset"``: each episode starts from our ``env.reset``; gymnasium's state is set from ours
      once, after the reset (for dynamics that are not chaotic);
    - ``"step"``: as ``"reset"``, but gymnasium's state is set from ours before *every* step, so
      single transitions along our trajectory are compared (for chaotic dynamics);
    - ``"from_gym"``: gymnasium runs its own episodes (first reset with ``seed``); before every
      step our state is built as ``state_cls(gymnasium's state, its elapsed steps)``, and the
      policy sees gymnasium's float64 state.

    At every step: our obs and reward are float32 scalars-per-step; obs within
    ``obs_atol``/``obs_rtol`` of gymnasium's; rewards per the reward tolerances; ``terminated`` and
    ``truncated`` equal; our ``t`` equals gymnasium's elapsed steps; then ``check_step``.
    Also asserts that gymnasium's time limit is ours and is ``max_episode_steps``.
    """
    gym_env = gym.make(env.env_id)
    limit = time_limit(gym_env)
    assert limit._max_episode_steps == type(env).max_episode_steps == max_episode_steps
    reset = jax.jit(env.reset)
    rng = np.random.default_rng(seed)
    key = jax.random.PRNGKey(seed)

    def new_episode(first: bool):
        nonlocal key
        if sync == "from_gym":
            obs, _ = gym_env.reset(seed=seed if first else None)
            return None, obs
        key, sub = jax.random.split(key)
        state, obs = reset(sub)
        gym_env.reset(seed=int(rng.integers(2**31)))
        if sync == "reset":
            gym_env.unwrapped.state = np.asarray(state.physics, np.float64)  # start from our state
        return state, obs

    state, obs = new_episode(first=True)
    truncations = terminations = 0
    final_rewards: list[float] = []
    for i in range(num_steps):
        elapsed = limit._elapsed_steps
        if sync == "from_gym":
            gym_state = np.array(gym_env.unwrapped.state, np.float64)
            np.testing.assert_allclose(gym_state.astype(np.float32), obs, atol=1e-6)
            state = state_cls(jnp.asarray(gym_state, jnp.float32), jnp.asarray(elapsed, jnp.int32))
            obs = gym_state
        elif sync == "step":
            gym_env.unwrapped.state = np.asarray(state.physics, np.float64)  # re-sync (chaos)
        action = policy(np.asarray(obs), rng)
        ours = Step(*jax_step(KEY, state, jax_action(action)))
        g_obs, g_reward, g_terminated, g_truncated, _ = gym_env.step(action)

        where = f"step {i} (episode {truncations + terminations}, t={elapsed}, action={action})"
        assert ours.obs.dtype == jnp.float32 and ours.reward.dtype == jnp.float32, where
        assert ours.reward.shape == ours.terminated.shape == ours.truncated.shape == (), where
        np.testing.assert_allclose(
            np.asarray(ours.obs), g_obs, rtol=obs_rtol, atol=obs_atol, err_msg=where
        )
        assert_reward(ours.reward, g_reward, reward_rtol, reward_atol, where)
        assert bool(ours.terminated) == g_terminated, where
        assert bool(ours.truncated) == g_truncated, where
        assert int(ours.state.t) == limit._elapsed_steps == elapsed + 1, where
        if check_step is not None:
            check_step(ours, g_obs, np.asarray(gym_env.unwrapped.state, np.float64), where)
        # From gymnasium, the next step starts from gymnasium's observation; else from ours.
        state, obs = (None, g_obs) if sync == "from_gym" else (ours.state, ours.obs)
        if g_terminated or g_truncated:
            truncations += int(g_truncated)
            terminations += int(g_terminated)
            if g_terminated:
                final_rewards.append(float(ours.reward))
            state, obs = new_episode(first=False)
    gym_env.close()
    return ParityCounts(truncations, terminations, final_rewards)


def gym_unwrapped(env_id: str) -> gym.Env:
    """gymnasium's bare environment (no wrappers, no time limit), reset once with seed 0."""
    env = gym.make(env_id).unwrapped
    env.reset(seed=0)
    return env


def gym_step_from(gym_env: gym.Env, state: Any, action: Any) -> tuple:
    """gymnasium's transition from ``state`` (set as its state as given): ``env.step``'s tuple."""
    gym_env.state = state
    return gym_env.step(action)


def assert_transitions_match(
    env: Any,
    jax_step: Callable,
    state_cls: Callable,
    cases: list[tuple[Any, Any]],
    *,
    obs_atol: float,
    reward_rtol: float | None = None,
    reward_atol: float | None = None,
) -> list[Step]:
    """One step from each ``(physics, action)`` in ``cases``, ours (float32, ``t = 0``) against
    gymnasium's (from the same state in float64): obs within ``obs_atol``, rewards per the reward
    tolerances, ``terminated`` equal, and not truncated. Returns our steps, in order."""
    gym_env = gym_unwrapped(env.env_id)
    steps = []
    for physics, action in cases:
        g_obs, g_reward, g_terminated, _, _ = gym_step_from(
            gym_env, np.array(physics, np.float64), action
        )
        state = state_cls(jnp.array(physics, jnp.float32), jnp.int32(0))
        ours = Step(*jax_step(KEY, state, jax_action(action)))
        where = f"{physics}, action {action}"
        np.testing.assert_allclose(
            np.asarray(ours.obs), g_obs, rtol=0, atol=obs_atol, err_msg=where
        )
        assert_reward(ours.reward, g_reward, reward_rtol, reward_atol, where)
        assert bool(ours.terminated) == g_terminated, where
        assert not bool(ours.truncated), where
        steps.append(ours)
    return steps


def step_batch(
    env: Any, state_cls: Callable, physics: np.ndarray, actions: np.ndarray, *, x64: bool = False
) -> Step:
    """``jit(vmap(env.step))`` from a batch of states (``t = 0``) in float32, or in float64 under
    ``jax.enable_x64`` (where the same code computes like gymnasium); asserts the state's dtype."""
    dtype = jnp.float64 if x64 else jnp.float32
    n = len(physics)
    with jax.enable_x64(x64):
        step = jax.jit(jax.vmap(env.step, in_axes=(None, 0, 0)))
        batch = state_cls(jnp.asarray(physics, dtype), jnp.zeros(n, jnp.int32))
        out = Step(*step(KEY, batch, jnp.asarray(actions)))
        assert out.state.physics.dtype == dtype
    return out


def assert_truncates_exactly_at(
    env: Any, limit: int, actions: jax.Array, key: jax.Array = EPISODE_KEY
) -> np.ndarray:
    """A jitted ``lax.scan`` episode from ``env.reset(key)`` fed ``actions`` (``limit`` of them):
    never terminated, truncated exactly at ``t == limit``, ``t`` counting 1..limit. Returns the
    rewards."""
    assert len(actions) == limit

    def episode(key, actions):
        state, _ = env.reset(key)

        def body(s, a):
            s, obs, reward, terminated, truncated = env.step(KEY, s, a)
            return s, (reward, terminated, truncated, s.t)

        return jax.lax.scan(body, state, actions)[1]

    rewards, terminated, truncated, t = jax.jit(episode)(key, actions)
    assert not np.any(terminated)
    np.testing.assert_array_equal(np.asarray(truncated), np.arange(1, limit + 1) == limit)
    np.testing.assert_array_equal(np.asarray(t), np.arange(1, limit + 1))
    return np.asarray(rewards)


def batch_reset(env: Any, n: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """``jit(vmap(env.reset))`` over ``n`` keys: obs of shape ``(n, *obs_shape)``, float32 obs and
    state, int32 ``t`` all 0. Returns ``(physics, obs)`` as numpy arrays."""
    states, obs = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.PRNGKey(0), n))
    assert obs.shape == (n, *env.obs_shape)
    assert obs.dtype == jnp.float32 and states.physics.dtype == jnp.float32
    assert states.t.dtype == jnp.int32 and np.all(np.asarray(states.t) == 0)
    return np.asarray(states.physics), np.asarray(obs)


def assert_uniform_in(
    x: np.ndarray,
    low: float,
    high: float,
    *,
    reach: tuple[float, float],
    mean_tol: float | None = None,
) -> None:
    """Samples (per column) look uniform on ``[low, high]``: all inside, the smallest below
    ``reach[0]`` and the largest above ``reach[1]``, and (unless ``mean_tol`` is None) the mean
    within ``mean_tol`` of the middle."""
    x = np.asarray(x)
    assert np.all(x >= low) and np.all(x <= high)
    assert np.all(x.min(0) < reach[0]) and np.all(x.max(0) > reach[1])
    if mean_tol is not None:
        assert np.all(np.abs(x.mean(0) - (low + high) / 2) < mean_tol)


def assert_vmap_step_matches_single_steps(
    env: Any,
    actions: jax.Array,
    *,
    t0: int,
    limit: int,
    rtol: float,
    atol: float,
    reward_rtol: float | None = None,
    reward_atol: float | None = None,
    edit_physics: Callable[[jax.Array], jax.Array] = lambda physics: physics,
    single_step: Callable | None = None,
) -> tuple[Any, Step]:
    """``jit(vmap(env.step))`` over a batch equals stepping each element alone.

    The batch: ``vmap(env.reset)`` over ``split(PRNGKey(1), len(actions))``, its physics passed
    through ``edit_physics``, and ``t = t0, t0 + 1, ...`` (so that those reaching ``limit``
    truncate). Checks the output shapes and ``truncated``, then per element: obs and state within
    ``rtol``/``atol`` of ``single_step``'s (default ``env.step``), rewards per the reward
    tolerances, ``t``, ``terminated`` and ``truncated`` equal. Returns ``(batch, batched step)``.
    """
    n = len(actions)
    keys = jax.random.split(jax.random.PRNGKey(1), n)
    states, _ = jax.vmap(env.reset)(keys)
    states = states._replace(
        physics=edit_physics(states.physics), t=jnp.arange(n, dtype=jnp.int32) + t0
    )
    new = Step(*jax.jit(jax.vmap(env.step))(keys, states, actions))
    assert new.obs.shape == (n, *env.obs_shape)
    assert new.reward.shape == new.terminated.shape == new.truncated.shape == (n,)
    np.testing.assert_array_equal(np.asarray(new.truncated), np.arange(n) + t0 + 1 >= limit)
    single_step = single_step or env.step
    for i in range(n):
        one = Step(*single_step(keys[i], jax.tree.map(operator.itemgetter(i), states), actions[i]))
        np.testing.assert_allclose(
            np.asarray(new.obs[i]), np.asarray(one.obs), rtol=rtol, atol=atol
        )
        np.testing.assert_allclose(
            np.asarray(new.state.physics[i]), np.asarray(one.state.physics), rtol=rtol, atol=atol
        )
        assert_reward(new.reward[i], float(one.reward), reward_rtol, reward_atol, f"element {i}")
        assert int(new.state.t[i]) == int(one.state.t)
        assert bool(new.terminated[i]) == bool(one.terminated)
        assert bool(new.truncated[i]) == bool(one.truncated)
    return states, new
