"""Sources of experience, all producing time-major :class:`Rollout` windows for the one learner.

* :mod:`~reinforce_jax.rollout.functional`: a JAX-native environment inside the compiled program;
* :mod:`~reinforce_jax.rollout.vectorized`: any vector environment stepped from the host;
* :mod:`~reinforce_jax.rollout.trajectory`: the rollout and batch types and :func:`to_batch`.
"""

from reinforce_jax.rollout.trajectory import Batch, Rollout, episode_stats, to_batch

__all__ = ["Batch", "Rollout", "episode_stats", "to_batch"]
