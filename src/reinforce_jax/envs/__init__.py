"""Environments: JAX-native ones stepped inside the compiled program, gymnasium ones on the host.

:func:`env_info` validates an id (known to gymnasium, discrete action space) and describes it;
:func:`make_jax_env` returns the JAX implementation where one exists.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Protocol

import jax

from reinforce_jax.config import ConfigError
from reinforce_jax.envs.cartpole import CartPole


class JaxEnv(Protocol):
    """A functional environment: pure ``reset`` and ``step``, batched with ``vmap``."""

    env_id: str
    obs_shape: tuple[int, ...]
    num_actions: int
    max_episode_steps: int

    def reset(self, key: jax.Array) -> tuple[Any, jax.Array]: ...

    def step(
        self, key: jax.Array, state: Any, action: jax.Array
    ) -> tuple[Any, jax.Array, jax.Array, jax.Array, jax.Array]: ...


JAX_ENVS = {"CartPole-v1": CartPole}

# Solve checks: mean greedy evaluation return at least this. CartPole-v1 uses the notebook's 500
# (a perfect score); gymnasium registers 475, which `reinforce evaluate` also reports.
SOLVE_THRESHOLDS = {"CartPole-v1": 500.0, "LunarLander-v3": 200.0}


@dataclass(frozen=True)
class EnvInfo:
    env_id: str
    obs_shape: tuple[int, ...]
    num_actions: int
    max_episode_steps: int | None
    reward_threshold: float | None  # gymnasium's registered threshold
    solve_threshold: float | None  # what `--stop-when-solved` and the solve check use
    has_jax: bool


def make_gym_env(env_id: str, **kwargs: Any) -> Any:
    """``gymnasium.make`` with unknown ids and missing extras turned into :class:`ConfigError`."""
    import gymnasium as gym

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return gym.make(env_id, **kwargs)
        except gym.error.Error as e:
            msg = str(e).splitlines()[0]
            raise ConfigError(f"unknown or unavailable environment {env_id!r}: {msg}") from None
        except ImportError as e:
            raise ConfigError(f"environment {env_id!r} needs a missing dependency: {e}") from None


def env_info(env_id: str) -> EnvInfo:
    """Describe ``env_id``; raises :class:`ConfigError` unless it is a discrete-action env."""
    import gymnasium as gym

    env = make_gym_env(env_id)
    try:
        space = env.action_space
        if not isinstance(space, gym.spaces.Discrete):
            raise ConfigError(
                f"{env_id} has a {type(space).__name__} action space; reinforce-jax supports "
                "Discrete action spaces only"
            )
        if not isinstance(env.observation_space, gym.spaces.Box):
            raise ConfigError(
                f"{env_id} has a {type(env.observation_space).__name__} observation space; "
                "reinforce-jax supports Box observations only"
            )
        if int(space.start) != 0:
            raise ConfigError(f"{env_id}: Discrete action spaces must start at 0")
        spec = env.spec
        reward_threshold = spec.reward_threshold if spec is not None else None
        return EnvInfo(
            env_id=env_id,
            obs_shape=tuple(env.observation_space.shape),
            num_actions=int(space.n),
            max_episode_steps=spec.max_episode_steps if spec is not None else None,
            reward_threshold=reward_threshold,
            solve_threshold=SOLVE_THRESHOLDS.get(env_id, reward_threshold),
            has_jax=env_id in JAX_ENVS,
        )
    finally:
        env.close()


def make_jax_env(env_id: str) -> JaxEnv:
    """The JAX implementation of ``env_id``; raises :class:`ConfigError` if there is none."""
    if env_id not in JAX_ENVS:
        raise ConfigError(
            f"{env_id} has no JAX implementation (available: {', '.join(JAX_ENVS)}); "
            "use --trainer host"
        )
    return JAX_ENVS[env_id]()
