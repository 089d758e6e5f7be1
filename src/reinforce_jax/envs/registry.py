"""Environment ids to specs, JAX-native implementations and vector-environment backends.

:func:`env_spec` validates an id against gymnasium's registry and describes it as an
:class:`~reinforce_jax.envs.spec.EnvSpec`; :func:`make_jax_env` returns the JAX-native
implementation where one exists (:data:`JAX_ENVS`); :data:`VECTOR_BACKENDS` name the vector
environments a host trainer can step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Callable
from typing import Any

from reinforce_jax.envs.functional import FunctionalEnv, spec_of
from reinforce_jax.envs.functional.acrobot import Acrobot
from reinforce_jax.envs.functional.cartpole import CartPole
from reinforce_jax.envs.functional.mountain_car import MountainCar
from reinforce_jax.envs.functional.mountain_car_continuous import MountainCarContinuous
from reinforce_jax.envs.functional.pendulum import Pendulum
from reinforce_jax.envs.spec import THRESHOLDS, Box, Discrete, EnvSpec
from reinforce_jax.errors import EnvError

JAX_ENVS: dict[str, Callable[[], FunctionalEnv]] = {
    "CartPole-v1": CartPole,
    "Acrobot-v1": Acrobot,
    "MountainCar-v0": MountainCar,
    "Pendulum-v1": Pendulum,
    "MountainCarContinuous-v0": MountainCarContinuous,
}


# gymnasium's registered reward thresholds of the JAX-native ids (a test checks them), so that their
# specs need no gymnasium import: a tenth of a second of every compiled run's start.
JAX_REWARD_THRESHOLDS: dict[str, float | None] = {
    "CartPole-v1": 475.0,
    "Acrobot-v1": -100.0,
    "MountainCar-v0": -110.0,
    "Pendulum-v1": None,
    "MountainCarContinuous-v0": 90.0,
}

# Retired ids gymnasium 1.x no longer registers, and what replaced them.
RETIRED = {"LunarLander-v2": "LunarLander-v3"}


def resolve_env_id(env_id: str) -> tuple[str, str | None]:
    """The registered id ``env_id`` means, and a notice when it is not ``env_id`` itself.

    Retired ids map to their successors; an id without a version (``CartPole``) takes the highest
    registered version, as ``gymnasium.make`` does. Only ids in gymnasium's registry are accepted:
    ``module:Env-vN`` ids (which make gymnasium import ``module``) and unknown ids raise
    :class:`EnvError` here, before anything is made, so an id read from a file never runs code.
    """
    if not isinstance(env_id, str) or not env_id or ":" in env_id:
        raise EnvError(
            f"environment id {env_id!r} is not a registered gymnasium id "
            "(ids of the form module:Env would import a module)"
        )
    if env_id in JAX_ENVS:  # registered in gymnasium (a test checks), known without importing it
        return env_id, None
    import gymnasium as gym
    from gymnasium.envs.registration import find_highest_version, parse_env_id

    if env_id in RETIRED:
        new = RETIRED[env_id]
        return new, f"notice: {env_id} is retired in gymnasium 1.x; using {new}"
    if env_id in gym.envs.registry:
        return env_id, None
    try:
        ns, name, version = parse_env_id(env_id)
    except gym.error.Error:
        raise EnvError(f"{env_id!r} is not a valid gymnasium environment id") from None
    latest = find_highest_version(ns, name)
    if version is None and latest is not None:
        new = f"{env_id}-v{latest}"
        return new, f"notice: {env_id} has no version; using {new}, the latest registered"
    hint = f" (gymnasium has {name}-v{latest})" if latest is not None else ""
    raise EnvError(f"unknown environment {env_id!r}: not in gymnasium's registry{hint}")


def _one_hot(env: Any) -> Any:
    """Discrete observations (FrozenLake, Taxi, CliffWalking) as one-hot float32 vectors."""
    import gymnasium as gym
    import numpy as np

    n = int(env.observation_space.n)
    start = int(env.observation_space.start)
    space = gym.spaces.Box(0.0, 1.0, (n,), np.float32)

    def encode(obs: Any) -> np.ndarray:
        out = np.zeros(n, np.float32)
        out[int(obs) - start] = 1.0
        return out

    return gym.wrappers.TransformObservation(env, encode, space)


def make_gym_env(env_id: str, **kwargs: Any) -> Any:
    """``gymnasium.make`` of a registered id; unknown ids and missing extras raise :class:`EnvError`.

    ``kwargs`` go to the environment (``continuous=False``, ``enable_wind=True``, ...); discrete
    observations come one-hot encoded, so every environment we return has Box observations.
    """
    import gymnasium as gym

    if env_id not in gym.envs.registry:
        resolve_env_id(env_id)  # raises for ids we refuse
        raise EnvError(f"{env_id!r} is not a registered id; use {resolve_env_id(env_id)[0]!r}")

    _route_mujoco_warnings(gym.envs.registry[env_id].entry_point)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            env = gym.make(env_id, **kwargs)
        except gym.error.Error as e:
            msg = str(e).splitlines()[0]
            raise EnvError(f"unknown or unavailable environment {env_id!r}: {msg}") from None
        except ImportError as e:
            raise EnvError(f"environment {env_id!r} needs a missing dependency: {e}") from None
        except TypeError as e:  # an argument the environment does not take
            raise EnvError(f"{env_id} does not accept these arguments {kwargs}: {e}") from None
    if isinstance(env.observation_space, gym.spaces.Discrete):
        env = _one_hot(env)
    if isinstance(env.action_space, gym.spaces.Box):
        env = _clip_actions(env)
    return env


def _route_mujoco_warnings(entry_point: Any) -> None:
    """MuJoCo prints each of its warnings and appends it to ``MUJOCO_LOG.TXT`` in the working
    directory. MuJoCo 3.x warns about an attribute gymnasium's models still use (``settotalmass``,
    HalfCheetah's) once per environment made: some 20 lines a run, and a file in the user's
    directory. Its warnings go to Python's instead: those of ``gym.make`` are ignored, as
    gymnasium's own are; later ones (an unstable simulation) show as Python shows warnings.
    A handler the user has set is kept."""
    if "mujoco" not in str(entry_point):
        return
    try:
        import mujoco
    except ImportError:
        return  # gym.make says what is missing
    if mujoco.get_mju_user_warning() is None:
        mujoco.set_mju_user_warning(_mujoco_warning)


def _mujoco_warning(message: str) -> None:
    with contextlib.suppress(Exception):  # nothing may raise into MuJoCo's C code
        warnings.warn(f"MuJoCo: {message}", UserWarning, stacklevel=2)


def _clip_actions(env: Any) -> Any:
    """Box actions clipped into the action space's bounds before the environment sees them.

    A Gaussian policy with ``action_bounds = clip`` hands over unclipped samples (its
    log-probability is the unclipped sample's). Unlike gymnasium's ``ClipAction`` this keeps the
    environment's ``action_space`` (and so its bounds) as it is; infinite bounds clip nothing.
    """
    import gymnasium as gym
    import numpy as np

    low, high = env.action_space.low, env.action_space.high

    class ClipBoxAction(gym.ActionWrapper):
        def action(self, action: Any) -> Any:
            return np.clip(np.asarray(action, low.dtype).reshape(low.shape), low, high)

    return ClipBoxAction(env)


def action_space_of(env_id: str, space: Any) -> Discrete | Box:
    """Our value for a gymnasium action space; :class:`EnvError` for the ones we cannot act in.

    ``Discrete`` (starting at 0) and ``Box`` (float bounds, flattened into tuples; infinite bounds
    are allowed here and refused by a distribution that needs finite ones) are accepted.
    """
    import gymnasium as gym
    import numpy as np

    if isinstance(space, gym.spaces.Discrete):
        if int(space.start) != 0:
            raise EnvError(f"{env_id}: Discrete action spaces must start at 0")
        return Discrete(int(space.n))
    if isinstance(space, gym.spaces.Box):
        if not np.issubdtype(space.dtype, np.floating):
            raise EnvError(f"{env_id} has an integer Box action space; reinforce-jax supports "
                           "Discrete and float Box action spaces only")  # fmt: skip
        if int(np.prod(space.shape)) == 0:
            raise EnvError(f"{env_id} has an empty Box action space {space.shape}")
        low = tuple(float(x) for x in np.asarray(space.low, np.float64).reshape(-1))
        high = tuple(float(x) for x in np.asarray(space.high, np.float64).reshape(-1))
        return Box(low, high, tuple(int(n) for n in space.shape))
    raise EnvError(
        f"{env_id} has a {type(space).__name__} action space; reinforce-jax supports "
        "Discrete and Box action spaces only"
    )


def env_spec(env_id: str, env_args: dict[str, Any] | None = None) -> EnvSpec:
    """Describe ``env_id`` made with ``env_args``; raises :class:`EnvError` unless we can train on it.

    A JAX-native id without arguments is described by its implementation (equal to gymnasium's
    description, which a test checks) without importing gymnasium.
    """
    if env_id in JAX_ENVS and not env_args:
        spec = spec_of(JAX_ENVS[env_id]())
        return dataclasses.replace(spec, reward_threshold=JAX_REWARD_THRESHOLDS[env_id])
    return gym_env_spec(env_id, env_args)


def gym_env_spec(env_id: str, env_args: dict[str, Any] | None = None) -> EnvSpec:
    """:func:`env_spec` from the environment gymnasium makes."""
    import gymnasium as gym

    env_args = dict(env_args or {})
    env = make_gym_env(env_id, **env_args)
    try:
        action_space = action_space_of(env_id, env.action_space)
        if not isinstance(env.observation_space, gym.spaces.Box):
            raise EnvError(
                f"{env_id} has a {type(env.observation_space).__name__} observation space; "
                "reinforce-jax supports Box and Discrete (one-hot encoded) observations only"
            )
        spec = env.spec
        return EnvSpec(
            env_id=env_id,
            obs_shape=tuple(env.observation_space.shape),
            action_space=action_space,
            max_episode_steps=spec.max_episode_steps if spec is not None else None,
            reward_threshold=spec.reward_threshold if spec is not None else None,
            thresholds=dict(THRESHOLDS.get(env_id, {})),
            has_jax=env_id in JAX_ENVS and not env_args,  # JAX-native envs take no arguments
            env_args=env_args,
        )
    finally:
        env.close()


def make_jax_env(env_id: str) -> FunctionalEnv:
    """The JAX-native implementation of ``env_id``; :class:`EnvError` if there is none."""
    if env_id not in JAX_ENVS:
        raise EnvError(f"{env_id} has no JAX implementation (available: {', '.join(JAX_ENVS)})")
    return JAX_ENVS[env_id]()
