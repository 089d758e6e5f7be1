"""Saved policies: the shipped ones (``pretrained/<env id>.msgpack`` plus a JSON sidecar), and the
one way any saved parameters act and are evaluated (``reinforce evaluate``, ``reinforce video``)."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import jax
import numpy as np

from reinforce_jax.agent import Act, make_act, policy_networks
from reinforce_jax.config import Config, from_dict, validate
from reinforce_jax.envs.registry import env_spec
from reinforce_jax.envs.spec import EnvSpec
from reinforce_jax.errors import ConfigError
from reinforce_jax.evaluate import HostEvaluator


def load_pretrained(env_id: str) -> tuple[Config, Any]:
    """The shipped policy for ``env_id``: its config and parameters (plain arrays, no code)."""
    from flax import serialization

    folder = resources.files("reinforce_jax") / "pretrained"
    params_file, meta_file = folder / f"{env_id}.msgpack", folder / f"{env_id}.json"
    if not params_file.is_file() or not meta_file.is_file():
        raise ConfigError(f"no pretrained policy for {env_id}")
    meta = json.loads(meta_file.read_text())
    cfg = validate(from_dict(meta["config"]))
    return cfg, serialization.msgpack_restore(params_file.read_bytes())


def policy_act(cfg: Config, spec: EnvSpec, greedy: bool) -> Act:
    """``act`` for parameters trained with ``cfg`` on ``spec`` (the networks rebuilt from both)."""
    networks, dist = policy_networks(cfg, spec.action_space)
    return make_act(networks, dist, greedy)


def check_params(cfg: Config, spec: EnvSpec, params: Any) -> None:
    """Refuse parameters that do not fit ``cfg`` on ``spec`` or hold NaN/inf (one clear line)."""
    import jax.numpy as jnp

    networks, dist = policy_networks(cfg, spec.action_space)
    if not isinstance(params, dict) or "policy" not in params:
        raise ConfigError("the parameter file holds no policy")
    template = jax.eval_shape(
        networks.policy.init, jax.random.PRNGKey(0), jnp.zeros((1, *spec.obs_shape), jnp.float32)
    )
    try:
        shapes = jax.tree.map(lambda t, p: t.shape == np.shape(p), template, params["policy"])
    except (ValueError, TypeError):
        shapes = None
    if shapes is None or not all(jax.tree.leaves(shapes)):
        raise ConfigError(f"the parameters do not fit this run's network on {spec.env_id} "
                          "(another environment or config?)")  # fmt: skip
    leaves = jax.tree.leaves(params)
    if not all(np.all(np.isfinite(np.asarray(x, np.float64))) for x in leaves):
        raise ConfigError("the parameters hold NaN or inf (the training diverged)")


def evaluate_policy(
    cfg: Config,
    params: Any,
    env_id: str | None = None,
    episodes: int = 100,
    seed: int = 0,
    greedy: bool = True,
) -> np.ndarray:
    """Returns of ``episodes`` gymnasium episodes (episode ``k`` reset with seed ``seed + k``).

    ``params`` holds ``"policy"`` (and ``"obs_norm"`` when trained with it). Greedy evaluation is
    deterministic; sampled evaluation draws from ``PRNGKey(seed)``.
    """
    spec = env_spec(env_id or cfg.env_id, cfg.env_args)
    check_params(cfg, spec, params)
    evaluator = HostEvaluator(spec.env_id, policy_act(cfg, spec, greedy), episodes,
                              env_args=spec.env_args)  # fmt: skip
    try:
        returns, _ = evaluator.run(params, seed, jax.random.PRNGKey(seed))
        return returns
    finally:
        evaluator.close()
