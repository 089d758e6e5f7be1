"""reinforce-jax: REINFORCE policy gradients in JAX.

The building blocks of the notebook, importable from the top level::

    from reinforce_jax import discounted_returns, policy_gradient_loss, sample_action

Layers, each importing only those below it: ``core`` (returns, distributions, losses) ->
``networks`` and ``agent`` (the one ``act``) -> ``envs`` -> ``rollout`` -> ``evaluate`` ->
``learner`` -> ``trainers`` -> ``app`` (the only code that prints or writes).
"""

from reinforce_jax.config import Config, ConfigError, make_config
from reinforce_jax.core import (
    Categorical,
    batched_discounted_returns,
    batched_policy_gradient_loss,
    discounted_returns,
    entropy,
    for_action_space,
    greedy_action,
    policy_gradient_loss,
    sample_action,
    weighted_log_prob,
)
from reinforce_jax.learner import LearnerState, make_learner
from reinforce_jax.networks import MLP, Networks, make_networks
from reinforce_jax.rollout.trajectory import Batch

__version__ = "0.1.0"

__all__ = [
    "MLP",
    "Batch",
    "Categorical",
    "Config",
    "ConfigError",
    "LearnerState",
    "Networks",
    "batched_discounted_returns",
    "batched_policy_gradient_loss",
    "discounted_returns",
    "entropy",
    "for_action_space",
    "greedy_action",
    "make_config",
    "make_learner",
    "make_networks",
    "policy_gradient_loss",
    "sample_action",
    "weighted_log_prob",
]
