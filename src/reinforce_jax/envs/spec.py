"""What an algorithm needs to know of an environment, as plain values.

:class:`EnvSpec` describes an environment (observation shape, action space, time limit and the
thresholds a policy is judged by); :class:`Discrete` and :class:`Box` describe action spaces. A
JAX-native environment (``envs/functional``) carries the same attributes, so the networks, the
distribution and the trainers are chosen from values, never from an environment's name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reinforce_jax.core.spaces import ActionSpace, Box, Discrete

__all__ = ["THRESHOLDS", "ActionSpace", "Box", "Discrete", "EnvSpec"]


# Thresholds a policy's mean return is judged by. "solve" is what `--stop-when-solved` and every
# solve check use; the others are reported beside it by `reinforce evaluate`. CartPole-v1 is solved
# at the notebook's 500 (a perfect score); gymnasium registers 475.
THRESHOLDS: dict[str, dict[str, float]] = {
    "CartPole-v1": {"solve": 500.0, "gymnasium": 475.0, "notebook": 500.0},
    "LunarLander-v3": {"solve": 200.0, "gymnasium": 200.0},
    "LunarLanderContinuous-v3": {"solve": 200.0, "gymnasium": 200.0},
    # Gymnasium registers no threshold for Pendulum-v1. -200 (issue 12) is what a policy earns that
    # swings up from any start and then holds the pendulum upright: the first steps' swing-up
    # costs the whole score (holding upright costs ~0 per step); good PPO/SAC policies reach
    # -140..-200, a policy that cannot swing up stays below -700.
    "Pendulum-v1": {"solve": -200.0},
    # A perfect score, as CartPole's 500: balanced for all 1000 steps; gymnasium registers 950.
    "InvertedPendulum-v5": {"solve": 1000.0, "gymnasium": 950.0},
}


@dataclass(frozen=True)
class EnvSpec:
    env_id: str
    obs_shape: tuple[int, ...]
    action_space: ActionSpace
    max_episode_steps: int | None
    reward_threshold: float | None = None  # gymnasium's registered threshold
    thresholds: dict[str, float] = field(default_factory=dict)  # named thresholds, see THRESHOLDS
    has_jax: bool = False  # a JAX-native implementation exists (envs/functional)
    env_args: dict = field(default_factory=dict)  # keyword arguments of gymnasium.make

    @property
    def solve_threshold(self) -> float | None:
        """What the solve check uses: the project's choice, else gymnasium's registered one."""
        return self.thresholds.get("solve", self.reward_threshold)

    @property
    def num_actions(self) -> int:
        if not isinstance(self.action_space, Discrete):
            raise TypeError(f"{self.env_id} has no discrete action count")
        return self.action_space.n

    def facts(self) -> dict:
        """JSON-ready facts saved in a run's config.json."""
        space = self.action_space
        action = (
            {"type": "discrete", "n": space.n}
            if isinstance(space, Discrete)
            else {"type": "box", "low": list(space.low), "high": list(space.high)}
        )
        return {"obs_shape": list(self.obs_shape), "action_space": action,
                "num_actions": space.n if isinstance(space, Discrete) else None,
                "max_episode_steps": self.max_episode_steps, "env_args": dict(self.env_args),
                "reward_threshold": self.reward_threshold,
                "solve_threshold": self.solve_threshold}  # fmt: skip
