"""reinforce-jax: REINFORCE policy gradients in JAX.

The building blocks of the notebook, importable from the top level::

    from reinforce_jax import discounted_returns, policy_gradient_loss, sample_action

Layers, each importing only those below it: ``core`` (returns, distributions, losses) ->
``networks`` and ``agent`` (the one ``act``) -> ``envs`` -> ``rollout`` -> ``evaluate`` ->
``learner`` -> ``trainers`` -> ``app`` (the only code that prints or writes).

Every name below loads on first use (PEP 562), so ``import reinforce_jax`` and ``reinforce
--help`` do not pay for JAX, flax or optax until something needs them.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "Config": "reinforce_jax.config",
    "ConfigError": "reinforce_jax.errors",
    "make_config": "reinforce_jax.config",
    "Categorical": "reinforce_jax.core.distributions",
    "Gaussian": "reinforce_jax.core.distributions",
    "for_action_space": "reinforce_jax.core.distributions",
    "batched_discounted_returns": "reinforce_jax.core.returns",
    "discounted_returns": "reinforce_jax.core.returns",
    "batched_policy_gradient_loss": "reinforce_jax.core.losses",
    "entropy": "reinforce_jax.core.losses",
    "greedy_action": "reinforce_jax.core.losses",
    "policy_gradient_loss": "reinforce_jax.core.losses",
    "sample_action": "reinforce_jax.core.losses",
    "weighted_log_prob": "reinforce_jax.core.losses",
    "LearnerState": "reinforce_jax.learner",
    "make_learner": "reinforce_jax.learner",
    "MLP": "reinforce_jax.networks",
    "Networks": "reinforce_jax.networks",
    "make_networks": "reinforce_jax.networks",
    "Batch": "reinforce_jax.rollout.trajectory",
    # the Python API
    "Run": "reinforce_jax.app.api",
    "load_run": "reinforce_jax.app.api",
    "pretrained": "reinforce_jax.app.api",
    "sweep": "reinforce_jax.app.api",
    "train": "reinforce_jax.app.api",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'reinforce_jax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = sorted(_EXPORTS)
