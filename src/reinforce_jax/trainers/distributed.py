"""Seeds split across processes (``jax.distributed``): the one place that decides which seeds a
process trains and that gathers every process's per-seed arrays.

Each of N processes trains a contiguous slice of the K seeds and keeps their global ids, so seed
``s`` starts from ``PRNGKey(s)`` exactly as in a one-process run. After each chunk the per-seed
arrays (metrics, evaluations, state) are all-gathered with JAX's multihost utilities (over the
collectives ``jax.distributed.initialize`` set up; no networking of our own), so every process
holds every seed's rows: decisions taken on them (stop when solved) agree everywhere, and
process 0 can record the whole run. In a single process the split is every seed and gathering is
a plain ``device_get``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np

from reinforce_jax.config import Config
from reinforce_jax.envs.spec import EnvSpec
from reinforce_jax.errors import ConfigError


class SeedSplit(NamedTuple):
    """This process's share ``[start, stop)`` of ``total`` items along a leading (seed) axis."""

    start: int
    stop: int
    total: int
    processes: int

    def take(self, tree: Any) -> Any:
        """This process's part of a tree whose leaves lead with the whole seed axis."""

        def part(x: Any) -> Any:
            if np.shape(x)[:1] != (self.total,):
                raise ConfigError(f"the checkpoint does not fit this run's config: it holds "
                                  f"{np.shape(x)[:1]} seeds, this run {self.total}")  # fmt: skip
            return x[self.start : self.stop]

        return jax.tree.map(part, tree)

    def gather(self, tree: Any) -> Any:
        """Every process's part of ``tree``, joined along the seed axis in process order, as
        host arrays on every process (a collective: every process must call it, in step)."""
        local = jax.device_get(tree)
        if self.processes == 1:
            return local
        from jax.experimental import multihost_utils

        return multihost_utils.process_allgather(local, tiled=True)


def check_split(num_items: int, processes: int, what: str = "seeds") -> None:
    """Refuse ``num_items`` that ``processes`` cannot share equally (one program shape for all)."""
    if processes < 1:
        raise ConfigError(f"the number of processes must be at least 1, got {processes}")
    if num_items % processes:
        raise ConfigError(f"{num_items} {what} cannot be split evenly over {processes} processes: "
                          f"give a multiple of {processes}")  # fmt: skip


def seed_split(num_items: int, what: str = "seeds") -> SeedSplit:
    """This process's contiguous share of ``num_items`` (all of them in a single process)."""
    index, count = jax.process_index(), jax.process_count()
    check_split(num_items, count, what)
    per = num_items // count
    return SeedSplit(index * per, (index + 1) * per, num_items, count)


def check_processes(cfg: Config, spec: EnvSpec, processes: int) -> None:
    """Refuse, before any process starts, what ``processes`` processes cannot train together."""
    from reinforce_jax.trainers import resolve_trainer

    if processes == 1:
        return
    trainer = resolve_trainer(cfg, spec)
    if trainer != "compiled":
        raise ConfigError(f"several processes need the compiled trainer (JAX-native environments); "
                          f"this run uses the {trainer} trainer")  # fmt: skip
    check_split(cfg.num_seeds, processes)
