"""What every trainer yields, and how a trainer's state becomes plain arrays for a checkpoint.

A trainer is a generator of these events; the application layer records them without knowing
which trainer made them. Rows are plain dicts (one per seed and update, episode or evaluation) so
that they go to JSONL unchanged.

One meaning of a checkpoint's position: ``evaluations``, the number of evaluations completed. Every
checkpoint is offered right after an evaluation, so the rows logged up to it are exactly the rows a
resumed run must keep.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from reinforce_jax.errors import ConfigError


@dataclass
class TrainRows:
    """One row per seed and update (batched trainers) or episode (the notebook's procedure)."""

    rows: list[dict[str, Any]]


@dataclass
class EvalRows:
    """One evaluation row per seed (see :func:`reinforce_jax.evaluate.eval_row`), and the
    parameters evaluated, with a leading seed axis."""

    rows: list[dict[str, Any]]
    params: Any


@dataclass
class Checkpoint:
    """The trainer's whole state after ``evaluations`` evaluations, as plain arrays plus JSON."""

    evaluations: int
    state: dict[str, np.ndarray]  # see flatten_state
    meta: dict[str, Any] = field(default_factory=dict)  # JSON-ready bookkeeping of the trainer

    def __post_init__(self) -> None:
        # A snapshot: the session may save a checkpoint after the trainer has gone on and
        # changed its own bookkeeping (solved_at gains the next chunk's solves).
        self.meta = copy.deepcopy(self.meta)


@dataclass
class Done:
    """The end of training: final parameters (leading seed axis) and summary figures."""

    params: Any
    env_steps: int
    solved_at: dict[str, dict[str, Any]]  # seed (as text) -> its first solving evaluation row
    extra: dict[str, Any] = field(default_factory=dict)
    stop_reason: str = ""  # why training stopped, in words


Event = TrainRows | EvalRows | Checkpoint | Done


def flatten_state(state: Any) -> dict[str, np.ndarray]:
    """A pytree's leaves as ``{"0": array, "1": ...}``: plain arrays, no structure, no code."""
    return {str(i): np.asarray(x) for i, x in enumerate(jax.tree.leaves(jax.device_get(state)))}


def restore_state(template: Any, leaves: dict[str, Any]) -> Any:
    """Put saved leaves into ``template``'s structure; :class:`ConfigError` if they do not fit.

    Leaves that are NumPy arrays in the template stay NumPy (full precision, on the host).
    """

    def misfit(why: str) -> ConfigError:
        return ConfigError(f"the checkpoint does not fit this run's config: {why}")

    flat, treedef = jax.tree.flatten(template)
    if len(leaves) != len(flat):
        raise misfit(f"checkpoint holds {len(leaves)} arrays, this config needs {len(flat)}")
    restored = []
    for i, ref in enumerate(flat):
        x = np.asarray(leaves.get(str(i)))
        if x.shape != np.shape(ref) or x.dtype != np.asarray(ref).dtype:
            raise misfit(f"checkpoint array {i} is {x.dtype}{list(x.shape)}, "
                         f"expected {np.asarray(ref).dtype}{list(np.shape(ref))}")  # fmt: skip
        restored.append(x if isinstance(ref, np.ndarray) else jnp.asarray(x))
    return jax.tree.unflatten(treedef, restored)


def stack_seed(params: Any) -> Any:
    """Give one seed's parameters the leading seed axis every trainer's output has."""
    return jax.tree.map(lambda x: np.asarray(x)[None], jax.device_get(params))


def row_key(label: dict[str, Any]) -> str:
    """A row's key in ``solved_at``: its seed (``"3"``), or ``"config:seed"`` in a sweep."""
    return f"{label['config']}:{label['seed']}" if "config" in label else str(label["seed"])


def check_solved_at(solved_at: Any) -> None:
    """A checkpoint's ``solved_at`` must map seeds (as text) to evaluation rows."""
    ok = isinstance(solved_at, dict) and all(
        isinstance(k, str) and isinstance(v, dict) for k, v in solved_at.items()
    )
    if not ok:
        raise ConfigError("the checkpoint's solved_at bookkeeping is corrupt")


def check_counter(meta: dict[str, Any], name: str, low: int, high: int | None = None) -> int:
    """A checkpoint's integer counter ``meta[name]`` within ``[low, high]``, or ConfigError."""
    v = meta.get(name)
    if not isinstance(v, int) or isinstance(v, bool) or v < low or (high is not None and v > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise ConfigError(f"the checkpoint's {name} ({v!r}) is corrupt: expected {bound}")
    return v
