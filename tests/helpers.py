"""Helpers shared by the tests: run a trainer and read its typed events as plain dicts."""

from __future__ import annotations

import dataclasses
from typing import Any

from reinforce_jax.config import Config
from reinforce_jax.envs import env_spec
from reinforce_jax.trainers import build_trainer
from reinforce_jax.trainers.events import Checkpoint, Done, EvalRows, TrainRows


def spec_for(env_id: str, threshold: float | None = None):
    spec = env_spec(env_id)
    if threshold is None:
        return spec
    return dataclasses.replace(spec, thresholds={**spec.thresholds, "solve": threshold})


def as_dict(event: Any) -> dict[str, Any]:
    """One event as ``{"train": rows}``, ``{"eval": rows, "params": ...}``, ``{"checkpoint": ...}``
    or ``{"done": {...}}``."""
    if isinstance(event, TrainRows):
        return {"train": event.rows}
    if isinstance(event, EvalRows):
        return {"eval": event.rows, "params": event.params}
    if isinstance(event, Checkpoint):
        return {"checkpoint": event}
    assert isinstance(event, Done)
    return {"done": {"params": event.params, "env_steps": event.env_steps,
                     "solved_at": event.solved_at, **event.extra}}  # fmt: skip


def train_events(cfg: Config, threshold: float | None = None, resume=None) -> list[dict[str, Any]]:
    """Build the trainer ``cfg`` names and run it to the end; its events as dicts."""
    trainer = build_trainer(cfg, spec_for(cfg.env_id, threshold))
    return [as_dict(e) for e in trainer.run(resume)]
