"""Trainers and their registry.

A trainer is built from a config and an environment spec; building validates every setting it
cannot run and raises :class:`~reinforce_jax.errors.ConfigError` *before* anything is written, and
only then does ``trainer.run(resume)`` yield events (:mod:`~reinforce_jax.trainers.events`).
Every built trainer has ``name``, ``unit`` (what ``total`` counts), ``total``, ``log_style`` and
``curve_window``, so the application layer never needs to know which one it runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib import import_module
from typing import Any, Protocol

from reinforce_jax.config import Config
from reinforce_jax.envs.spec import EnvSpec
from reinforce_jax.errors import ConfigError
from reinforce_jax.trainers.events import Checkpoint, Event


class Trainer(Protocol):
    name: str
    unit: str  # "updates" or "episodes"
    total: int  # units the run takes at most
    log_style: str  # "batched" or "notebook" (the console line the notebook prints)
    curve_window: int  # moving-average window of the learning curve

    def check_resume(self, resume: Checkpoint) -> None:
        """Raise ConfigError for a checkpoint this trainer cannot continue from."""
        ...

    def run(self, resume: Checkpoint | None = None) -> Iterator[Event]: ...


def _compiled(cfg: Config, spec: EnvSpec) -> Any:
    from reinforce_jax.trainers import compiled

    return compiled.build(cfg, spec)


def _host(cfg: Config, spec: EnvSpec) -> Any:
    from reinforce_jax.trainers import host

    return host.build(cfg, spec)


def _notebook(cfg: Config, spec: EnvSpec) -> Any:
    from reinforce_jax.trainers import notebook

    return notebook.build(cfg, spec)


# name -> build(cfg, spec); imported lazily so that a command loads only the trainer it runs.
TRAINERS: dict[str, Callable[[Config, EnvSpec], Trainer]] = {
    "compiled": _compiled,
    "host": _host,
    "notebook": _notebook,
    "envpool": lambda cfg, spec: import_module("reinforce_jax.trainers.pool").build(cfg, spec),
}


def resolve_trainer(cfg: Config, spec: EnvSpec) -> str:
    """The trainer ``cfg.trainer`` names; ``auto`` is compiled where a JAX-native env exists
    (and no environment arguments are given), envpool for :data:`~reinforce_jax.envs.envpool.
    AUTO_ENVS` (the host trainer, with a notice, where envpool is not installed), else host."""
    if cfg.trainer != "auto":
        return cfg.trainer
    if spec.has_jax:
        return "compiled"
    from reinforce_jax.envs import envpool as pools

    # Elsewhere envpool is chosen explicitly (--trainer envpool) until its defaults solve as
    # reliably as the host trainer's (README, "envpool").
    return "envpool" if pools.has_pool(spec) and spec.env_id in pools.AUTO_ENVS else "host"


def build_trainer(cfg: Config, spec: EnvSpec) -> Trainer:
    """Build (and so validate) the trainer for ``cfg``; :class:`ConfigError` if it cannot run."""
    name = resolve_trainer(cfg, spec)
    if name not in TRAINERS:
        raise ConfigError(f"unknown trainer {name!r}; choose one of: {', '.join(TRAINERS)}")
    if name != "compiled":
        import jax

        if jax.distributed.is_initialized() and jax.process_count() > 1:
            raise ConfigError(f"several processes need the compiled trainer; this run uses the "
                              f"{name} trainer")  # fmt: skip
    trainer = TRAINERS[name](cfg.replace(trainer=name), spec)
    if cfg.return_lambda < 1.0 and trainer.name not in ("envpool", "host"):
        raise ConfigError(f"return_lambda < 1 (TD(lambda) returns) is implemented by the envpool "
                          f"and host trainers; this run uses the {trainer.name} trainer")  # fmt: skip
    return trainer


__all__ = ["TRAINERS", "Trainer", "build_trainer", "resolve_trainer"]
