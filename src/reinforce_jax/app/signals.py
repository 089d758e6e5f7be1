"""Stop requests: SIGINT, SIGTERM and SIGHUP set a flag that training checks between events.

No exception is raised inside JAX, XLA or an import (an interrupt there used to crash the process
or be swallowed); the session checkpoints and stops at the next event. The CLI installs the
handlers first thing, so a signal during start-up is honoured too. Deliberately light: no imports
beyond the standard library.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)
_state: dict[str, Any] = {"signum": None, "installed": False}


def _handler(signum: int, frame: Any) -> None:
    if _state["signum"] is not None:
        print("still stopping: saving the checkpoint...", file=sys.stderr, flush=True)
    _state["signum"] = signum


def requested() -> int | None:
    """The signal that asked training to stop, or None."""
    return _state["signum"]


def install() -> bool:
    """Route the stop signals to the flag (main thread only); True if this call installed them."""
    if _state["installed"] or threading.current_thread() is not threading.main_thread():
        return False
    _state["previous"] = {s: signal.signal(s, _handler) for s in STOP_SIGNALS}
    _state["installed"] = True
    return True


def uninstall() -> None:
    if _state["installed"]:
        for s, h in _state.pop("previous").items():
            signal.signal(s, h)
        _state["installed"] = False
    _state["signum"] = None


@contextlib.contextmanager
def stop_requests() -> Iterator[None]:
    """Handlers installed for the duration (unless the CLI installed them already)."""
    mine = install()
    try:
        yield
    finally:
        if mine:
            uninstall()
