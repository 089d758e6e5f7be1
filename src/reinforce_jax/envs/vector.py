"""Vector environments behind one protocol, for trainers that step environments from the host.

A :class:`VectorEnv` steps ``num_envs`` environments at once with *same-step* autoreset: when an
episode ends at a step, the observation returned is already the next episode's first one, and the
finished episode's last observation is handed back in ``final_obs``. Any backend that converts to
this contract (gymnasium's ``SyncVectorEnv`` here; a C++ pool would convert its next-step reset)
plugs into :class:`~reinforce_jax.rollout.vectorized.HostRollout` through :data:`VECTOR_BACKENDS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Protocol

import numpy as np

from reinforce_jax.envs.envpool import EnvpoolVectorEnv
from reinforce_jax.envs.registry import make_gym_env


class VectorStep(NamedTuple):
    obs: np.ndarray  # [N, *obs_shape]: next observations (a new episode's first where done)
    reward: np.ndarray  # [N]
    terminated: np.ndarray  # [N] bool
    truncated: np.ndarray  # [N] bool
    final_obs: np.ndarray  # [N, *obs_shape]: the finished episode's last observation where done


class VectorEnv(Protocol):
    num_envs: int

    def reset(self, seed: int) -> np.ndarray:
        """Observations ``[N, *obs_shape]`` of fresh episodes, seeded from ``seed``."""
        ...

    def step(self, actions: np.ndarray) -> VectorStep: ...

    def close(self) -> None: ...


class GymnasiumVectorEnv:
    """gymnasium's ``SyncVectorEnv`` (same-step autoreset, never rendering) as a :class:`VectorEnv`.

    Synchronous rather than ``AsyncVectorEnv``: on the 2-core reference machine LunarLander-v3 steps
    at about 24-27k steps/s synchronously and 5-8k steps/s with subprocesses (pipe and pickle costs
    exceed the ~35 us a step costs); ``benchmarks/lunarlander.py`` measures both.
    """

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        env_args: dict | None = None,
        asynchronous: bool = False,
    ):
        import gymnasium as gym

        kwargs = dict(env_args or {})
        make_gym_env(env_id, **kwargs).close()  # unknown ids and missing extras raise here
        fns = [lambda: make_gym_env(env_id, **kwargs) for _ in range(num_envs)]
        same_step = gym.vector.AutoresetMode.SAME_STEP
        if asynchronous:  # "spawn": forking a process that has started JAX's threads can deadlock
            self.envs = gym.vector.AsyncVectorEnv(fns, autoreset_mode=same_step, context="spawn")
        else:
            self.envs = gym.vector.SyncVectorEnv(fns, autoreset_mode=same_step)
        self.num_envs = num_envs

    def reset(self, seed: int) -> np.ndarray:
        obs, _ = self.envs.reset(seed=seed)
        return obs

    def step(self, actions: np.ndarray) -> VectorStep:
        obs, reward, terminated, truncated, info = self.envs.step(actions)
        final = obs
        done = terminated | truncated
        if done.any():
            final = np.array(obs, copy=True)
            for i in np.flatnonzero(done):
                final[i] = info["final_obs"][i]
        return VectorStep(obs, reward, terminated, truncated, final)

    def close(self) -> None:
        self.envs.close()


# name -> factory(env_id, num_envs, env_args)
VECTOR_BACKENDS: dict[str, Callable[[str, int, dict | None], VectorEnv]] = {
    "gymnasium": GymnasiumVectorEnv,
    "gymnasium-async": lambda env_id, n, args=None: GymnasiumVectorEnv(env_id, n, args, True),
    "envpool": lambda env_id, n, args=None: EnvpoolVectorEnv(env_id, n, args),
}


def make_vector_env(
    env_id: str, num_envs: int, backend: str = "gymnasium", env_args: dict | None = None
) -> VectorEnv:
    return VECTOR_BACKENDS[backend](env_id, num_envs, env_args)


__all__ = ["VECTOR_BACKENDS", "GymnasiumVectorEnv", "VectorEnv", "VectorStep", "make_vector_env"]
