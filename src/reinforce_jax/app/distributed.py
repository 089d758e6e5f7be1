"""Several processes through ``jax.distributed``: the command's flags, SLURM detection, start-up,
and agreement before training.

``reinforce train ... --coordinator HOST:PORT --num-processes N --process-id I`` (or ``srun`` with
several tasks under SLURM) starts N processes that train their share of the seeds together
(:mod:`reinforce_jax.trainers.distributed`); process 0 alone writes the run directory. Any command
can take the same flags with :func:`add_distributed_args` and join with :func:`initialize`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from reinforce_jax.errors import ConfigError


@dataclass(frozen=True)
class Processes:
    """How this process joins the others: ``coordinator`` None means detected (SLURM)."""

    coordinator: str | None
    num_processes: int
    process_id: int


def add_distributed_args(parser: argparse.ArgumentParser) -> None:
    """The flags of several processes (``--coordinator``, ``--num-processes``, ``--process-id``)."""
    g = parser.add_argument_group(
        "several processes (jax.distributed; detected under SLURM's srun)"
    )
    g.add_argument("--coordinator", metavar="HOST:PORT",
                   help="address where process 0 listens; the same for every process")  # fmt: skip
    g.add_argument("--num-processes", type=int, metavar="N",
                   help="how many processes train together (each a share of the seeds)")  # fmt: skip
    g.add_argument("--process-id", type=int, metavar="I",
                   help="this process's index, 0..N-1; process 0 writes the run directory")  # fmt: skip


def processes_from_args(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> Processes | None:
    """The flags, else several SLURM tasks started by ``srun``, else None (one process).

    Checks the flags only (:class:`ConfigError`); nothing starts here.
    """
    environ = os.environ if environ is None else environ
    given = {k: getattr(args, k, None) for k in ("coordinator", "num_processes", "process_id")}
    if any(v is not None for v in given.values()):
        missing = [f"--{k.replace('_', '-')}" for k, v in given.items() if v is None]
        if missing and given["num_processes"] != 1:
            raise ConfigError(f"several processes need --coordinator, --num-processes and "
                              f"--process-id together; missing {', '.join(missing)}")  # fmt: skip
        return _checked(given["coordinator"], given["num_processes"], given["process_id"] or 0)
    # srun sets SLURM_STEP_NUM_TASKS for the tasks it starts; a batch script alone does not, so a
    # single process inside an allocation is not mistaken for one of several.
    tasks = environ.get("SLURM_STEP_NUM_TASKS")
    if tasks and tasks.isdigit() and int(tasks) > 1 and environ.get("SLURM_PROCID", "").isdigit():
        return _checked(None, int(tasks), int(environ["SLURM_PROCID"]))
    return None


def _checked(coordinator: str | None, num: int, index: int) -> Processes | None:
    if num < 1:
        raise ConfigError(f"--num-processes must be at least 1, got {num}")
    if not 0 <= index < num:
        raise ConfigError(f"--process-id must be in 0..{num - 1} for {num} processes, got {index}")
    if num == 1:
        return None
    if coordinator is not None:
        host, sep, port = coordinator.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"--coordinator expects HOST:PORT, got {coordinator!r}")
    return Processes(coordinator, num, index)


def initialize(processes: Processes | None) -> tuple[int, int]:
    """Join the other processes (``jax.distributed.initialize``); ``(process index, count)``.

    Must run before anything computes with JAX. Blocks until every process has joined. ``None``
    (one process) starts nothing.
    """
    if processes is None:
        return 0, 1
    import jax

    # Cross-process collectives on CPU (the default in recent JAX; explicit for older versions);
    # GPUs and TPUs bring their own.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator_address=processes.coordinator,
                                   num_processes=processes.num_processes,
                                   process_id=processes.process_id)  # fmt: skip
    except (RuntimeError, ValueError) as e:  # JAX already in use, a coordinator out of reach
        where = processes.coordinator or "the address SLURM gives"
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"cannot join the {processes.num_processes} processes at {where}: "
                          f"{why}") from None  # fmt: skip
    return jax.process_index(), jax.process_count()


def is_lead() -> bool:
    """Whether this process records the run (process 0, or the only one)."""
    import jax

    return jax.process_index() == 0


@contextlib.contextmanager
def agreeing() -> Iterator[None]:
    """Every process finishes its start-up (run directory, checkpoint) before any trains.

    A process whose start-up fails tells the others, which then stop too (:class:`ConfigError`)
    rather than wait for it in the trainer's first gather.
    """
    import jax

    if jax.process_count() == 1:
        yield
        return
    try:
        yield
    except Exception:
        _all_ok(False)
        raise
    if not _all_ok(True):
        raise ConfigError("another process could not start (see its error); nothing was trained")


def _all_ok(ok: bool) -> bool:
    import numpy as np
    from jax.experimental import multihost_utils

    return bool(np.all(multihost_utils.process_allgather(np.array([ok]), tiled=True)))
