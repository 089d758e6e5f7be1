"""reinforce-jax: REINFORCE policy gradients in JAX.

The building blocks of the notebook, importable from the top level::

    from reinforce_jax import discounted_returns, policy_gradient_loss, sample_action
"""

from reinforce_jax.config import Config, ConfigError, make_config
from reinforce_jax.learner import Batch, LearnerState, make_learner
from reinforce_jax.math import (
    batched_discounted_returns,
    batched_policy_gradient_loss,
    discounted_returns,
    entropy,
    greedy_action,
    policy_gradient_loss,
    sample_action,
    weighted_log_prob,
)
from reinforce_jax.policy import MLP, Networks, make_networks

__version__ = "0.1.0"

__all__ = [
    "MLP",
    "Batch",
    "Config",
    "ConfigError",
    "LearnerState",
    "Networks",
    "batched_discounted_returns",
    "batched_policy_gradient_loss",
    "discounted_returns",
    "entropy",
    "greedy_action",
    "make_config",
    "make_learner",
    "make_networks",
    "policy_gradient_loss",
    "sample_action",
    "weighted_log_prob",
]
