"""Pure REINFORCE maths: returns, distributions and losses.

Unbatched (or explicitly time-major), jittable, free of side effects; each function carries the
equation it computes. No configuration and no I/O live here.
"""

from reinforce_jax.core.distributions import Categorical, Distribution, Gaussian, for_action_space
from reinforce_jax.core.losses import (
    batched_policy_gradient_loss,
    entropy,
    greedy_action,
    policy_gradient_loss,
    sample_action,
    weighted_log_prob,
)
from reinforce_jax.core.returns import (
    batched_discounted_returns,
    discounted_returns,
    lambda_returns,
    masked_mean,
    normalize,
)

__all__ = [
    "Categorical",
    "Distribution",
    "Gaussian",
    "batched_discounted_returns",
    "batched_policy_gradient_loss",
    "discounted_returns",
    "entropy",
    "for_action_space",
    "greedy_action",
    "lambda_returns",
    "masked_mean",
    "normalize",
    "policy_gradient_loss",
    "sample_action",
    "weighted_log_prob",
]
