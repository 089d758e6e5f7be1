"""JAX-native environments: pure ``reset``/``step`` functions stepped inside the compiled program.

Each environment is a small class with the attributes of :class:`FunctionalEnv`; it is written
from gymnasium's reference implementation and checked against it step by step in the tests.
``step`` does not reset: rollouts and evaluation handle episode ends themselves.
"""

from __future__ import annotations

from typing import Any, Protocol

import jax

from reinforce_jax.envs.spec import ActionSpace, EnvSpec


class FunctionalEnv(Protocol):
    """A functional environment: pure ``reset`` and ``step`` for one environment, batched by vmap."""

    env_id: str
    obs_shape: tuple[int, ...]
    action_space: ActionSpace
    max_episode_steps: int
    # Optional: ``max_return``, the most an episode can score, where it is near the solve
    # threshold (CartPole); it lets a solve check stop an evaluation that cannot pass.

    def reset(self, key: jax.Array) -> tuple[Any, jax.Array]:
        """``(state, obs)`` of a new episode."""
        ...

    def step(
        self, key: jax.Array, state: Any, action: jax.Array
    ) -> tuple[Any, jax.Array, jax.Array, jax.Array, jax.Array]:
        """``(state, obs, reward, terminated, truncated)``; ``truncated`` at the time limit."""
        ...


def spec_of(env: FunctionalEnv, **thresholds: float) -> EnvSpec:
    """The :class:`EnvSpec` a functional environment describes (no gymnasium needed)."""
    from reinforce_jax.envs.spec import THRESHOLDS

    return EnvSpec(env.env_id, tuple(env.obs_shape), env.action_space, env.max_episode_steps,
                   thresholds={**THRESHOLDS.get(env.env_id, {}), **thresholds}, has_jax=True)  # fmt: skip
