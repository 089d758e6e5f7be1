"""Sweeps: every configuration x seed of a grid, in as few compiled programs as possible.

Settings that do not change an array's shape and that the program can take as values are
traced: all configurations that differ only in them train vmapped in one program, the PureJaxRL
way. The compiled trainer traces the learning rate, gradient clipping norm, entropy and value
weights and gamma (:data:`~reinforce_jax.trainers.compiled.TRACEABLE`); the envpool trainer
(environments with no JAX-native version, e.g. LunarLander-v3) all of them but gamma, its
configurations x seeds sharing one envpool (:data:`~reinforce_jax.trainers.pool.TRACEABLE`).
Any other setting (hidden sizes, number of environments, the schedule, ...) is structural: one
program per structural combination. Whether clipping happens at all (``max_grad_norm`` 0 or not)
and its ``clip_scope`` are structural too.

Configuration ``c`` with seed ``s`` starts from ``PRNGKey(s)`` as ``reinforce train --seed s``
does (common random numbers across configurations). Its numbers are close to, not bitwise equal
to, a plain run's: a plain run compiles its settings as constants, which XLA fuses differently.
"""

from __future__ import annotations

import itertools
import json
from typing import Any, NamedTuple

from reinforce_jax.config import FIELDS, Config, make_config
from reinforce_jax.envs.spec import EnvSpec
from reinforce_jax.errors import ConfigError
from reinforce_jax.trainers import compiled, pool

# What a grid may not vary: they say which run this is, not how it learns.
NOT_SWEPT = ("env_id", "env_args", "seed", "num_seeds", "trainer", "preset", "stop_when_solved")


class SweepGroup(NamedTuple):
    cfg: Config  # the group's structural settings (traced ones: its first configuration's)
    config_ids: list[int]  # indices into the sweep's configurations
    traced: tuple[str, ...]  # settings taken per row as values


class SweepPlan(NamedTuple):
    settings: list[dict[str, Any]]  # per configuration: the grid's values
    configs: list[Config]  # per configuration: the whole validated config
    seeds: list[int]
    groups: list[SweepGroup]
    trainer: str  # "compiled" or "envpool"


# What each trainer that batches configurations x seeds in one program can trace.
SWEEP_TRAINERS = {"compiled": compiled.TRACEABLE, "envpool": pool.TRACEABLE}


def sweep_trainer(cfg: Config, spec: EnvSpec) -> str:
    """The trainer a sweep of ``cfg`` runs on; :class:`ConfigError` where none can batch it."""
    from reinforce_jax.trainers import resolve_trainer

    name = resolve_trainer(cfg, spec)
    if name == "envpool":
        from reinforce_jax.envs import envpool as pools

        pools.check(spec)  # not installed, or a variant envpool lacks: one line, before any work
    if name not in SWEEP_TRAINERS:
        why = (f"is set to train with the {name!r} trainer" if cfg.trainer != "auto" else
               "has neither a JAX-native version nor an envpool one")  # fmt: skip
        raise ConfigError(
            f"reinforce sweep trains every configuration and seed vmapped in one program, which "
            f"needs the compiled or the envpool trainer; {spec.env_id} {why} (sweepable: "
            "CartPole-v1, Acrobot-v1, ... compiled; LunarLander-v3 on envpool)"
        )
    return name


def expand_grid(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, the first key varying slowest."""
    for key, values in grid.items():
        if key not in FIELDS:
            raise ConfigError(f"--grid {key}: not a config field (reinforce train --list-settings)")
        if key in NOT_SWEPT:
            raise ConfigError(f"--grid {key}: a sweep cannot vary {key} "
                              "(seeds come from --seed and --num-seeds)")  # fmt: skip
        if not values:
            raise ConfigError(f"--grid {key}: give at least one value")
        if len(set(map(repr, values))) != len(values):
            raise ConfigError(f"--grid {key}: a value is repeated in {values}")
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]


def plan_sweep(
    env_id: str, preset: str, overrides: dict[str, Any], grid: dict[str, list[Any]]
) -> SweepPlan:
    """Validate every configuration, choose the trainer and group the configurations into
    programs (:class:`ConfigError` first)."""
    from reinforce_jax.envs.registry import env_spec

    settings = expand_grid(grid)
    configs = []
    for i, values in enumerate(settings):
        try:
            configs.append(make_config(env_id, preset, {**overrides, **values}))
        except ConfigError as e:
            raise ConfigError(f"configuration {i} ({_describe(values)}): {e}") from None
    base = configs[0]
    trainer = sweep_trainer(base, env_spec(env_id, base.env_args))
    seeds = list(range(base.seed, base.seed + base.num_seeds))
    traced = tuple(k for k in grid if k in SWEEP_TRAINERS[trainer])
    groups: dict[str, list[int]] = {}
    for i, cfg in enumerate(configs):
        # Structural identity: the config with traced settings blanked (clipping on/off kept).
        blank = {k: 0.5 for k in traced}
        if "max_grad_norm" in traced:
            blank["max_grad_norm"] = float(cfg.max_grad_norm > 0)
        key = json.dumps(cfg.replace(**blank).to_dict(), sort_keys=True, default=str)
        groups.setdefault(key, []).append(i)
    plan_groups = []
    for ids in groups.values():
        cfg = configs[ids[0]].replace(num_seeds=len(ids) * len(seeds))
        names = traced
        if cfg.max_grad_norm == 0:  # no clipping in this group: nothing to trace
            names = tuple(k for k in traced if k != "max_grad_norm")
        plan_groups.append(SweepGroup(cfg, ids, names))
    return SweepPlan(settings, configs, seeds, plan_groups, trainer)


def build_sweep(plan: SweepPlan, spec: EnvSpec) -> list[Any]:
    """One trainer per group (``plan.trainer``'s); rows are labelled ``{"config": c, "seed": s}``."""
    env = None
    if plan.trainer == "compiled":
        from reinforce_jax.envs.registry import make_jax_env

        env = make_jax_env(spec.env_id)
    trainers: list[Any] = []
    for group in plan.groups:
        rows = [{"config": c, "seed": s} for c in group.config_ids for s in plan.seeds]
        hyper = {k: [getattr(plan.configs[r["config"]], k) for r in rows] for k in group.traced}
        cfg = group.cfg.replace(trainer=plan.trainer)
        if plan.trainer == "compiled":
            trainers.append(compiled.CompiledTrainer(cfg, spec, env, rows=rows, hyper=hyper))
        else:
            trainers.append(pool.PoolTrainer(cfg, spec, rows=rows, hyper=hyper))
    return trainers


def _describe(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


__all__ = [
    "NOT_SWEPT", "SWEEP_TRAINERS", "SweepGroup", "SweepPlan", "build_sweep", "expand_grid",
    "plan_sweep", "sweep_trainer",
]  # fmt: skip
