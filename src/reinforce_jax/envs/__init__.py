"""Environments: specs, JAX-native implementations, vector adapters and the registry.

* :mod:`~reinforce_jax.envs.spec`: :class:`EnvSpec`, the action spaces, the thresholds table;
* :mod:`~reinforce_jax.envs.functional`: JAX-native environments stepped inside compiled programs;
* :mod:`~reinforce_jax.envs.vector`: the :class:`VectorEnv` protocol and its gymnasium adapter;
* :mod:`~reinforce_jax.envs.registry`: ids to specs and implementations.
"""

from reinforce_jax.envs.registry import JAX_ENVS, env_spec, make_gym_env, make_jax_env
from reinforce_jax.envs.spec import THRESHOLDS, Box, Discrete, EnvSpec
from reinforce_jax.errors import EnvError

__all__ = [
    "JAX_ENVS",
    "THRESHOLDS",
    "Box",
    "Discrete",
    "EnvError",
    "EnvSpec",
    "env_spec",
    "make_gym_env",
    "make_jax_env",
]
