"""The run directory: everything a training run leaves on disk, written atomically, no pickle.

``runs/<name>/``
  ``config.json``      the resolved config (plus environment facts)
  ``train.jsonl``      one line per episode (notebook trainer) or per update (batched trainers)
  ``eval.jsonl``       one line per evaluation
  ``params.msgpack``   final parameters (flax.serialization msgpack: plain arrays, no code)
  ``curve.png``        learning curve: returns, moving average, evaluation points
  ``checkpoint.msgpack`` the trainer's whole state as plain arrays, plus JSON bookkeeping
  ``status.json``      running / finished / interrupted, with summary figures
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from reinforce_jax.config import Config, from_dict, validate
from reinforce_jax.errors import ConfigError, UnknownSettingsError

CHECKPOINT_FORMAT = 2  # 2: typed checkpoints ({"evaluations", "trainer", row counts})


class RunError(ConfigError):
    """A missing, foreign or corrupt run directory; the CLI prints it and exits with code 2."""


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory and a rename."""
    path = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; keep the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def default_run_name(cfg: Config) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{cfg.env_id}-{cfg.preset}-s{cfg.seed}-{stamp}"


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.generic, np.ndarray)) or hasattr(x, "__array__"):
        arr = np.asarray(x)
        if arr.ndim == 0:
            v = arr.item()
            return None if isinstance(v, float) and not np.isfinite(v) else v
        return _jsonable(arr.tolist())
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


class RunDir:
    """A run directory opened for writing (:meth:`create`) or reading (:meth:`open`)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    # --- creation ------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | Path,
        cfg: Config,
        env: dict[str, Any] | None = None,
        run_facts: dict[str, Any] | None = None,
    ) -> RunDir:
        """Make a new run directory; refuses to touch an existing file or non-empty directory."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise RunError(f"run directory {path} exists and is a file; choose another --run-dir")
        if path.is_dir() and any(path.iterdir()):
            raise RunError(
                f"run directory {path} already exists and is not empty; nothing was overwritten"
            )
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunError(f"cannot create run directory {path}: {e.strerror}") from None
        run = cls(path)
        run.lock()  # two processes creating one run: the second is refused here or just below
        if (path / "config.json").exists():
            run.unlock()
            raise RunError(
                f"run directory {path} already exists and is not empty; nothing was overwritten"
            )
        run.write_json("config.json", {"config": cfg.to_dict(), "env": env or {},
                                       "run": run_facts or {}})  # fmt: skip
        run.set_status("running")
        return run

    # --- the lock ------------------------------------------------------------------------------
    def lock(self) -> None:
        """Hold an exclusive lock on the run directory itself while this process trains it
        (released at exit, even on SIGKILL; no file is written); another process gets
        :class:`RunError`."""
        import fcntl

        if getattr(self, "_lock", None) is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError as e:
            raise RunError(f"cannot lock run directory {self.path}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunError(
                f"run {self.path} is being trained by another process; wait for it or stop it"
            ) from None
        self._lock = fd

    def unlock(self) -> None:
        fd = getattr(self, "_lock", None)
        if fd is not None:
            os.close(fd)  # closing releases the flock
            self._lock = None

    def remove_stale_temp_files(self) -> None:
        """Temporary files of atomic writes that a killed process left behind."""
        for tmp in self.path.glob(".*.*"):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)

    # --- writing -------------------------------------------------------------------------------
    def write_json(self, name: str, obj: Any) -> None:
        atomic_write(self.path / name, json.dumps(_jsonable(obj), indent=2) + "\n")

    def append(self, name: str, records: list[dict[str, Any]]) -> None:
        """Append JSON lines; each line is written whole, so a crash loses at most the last one."""
        if not records:
            return
        lines = "".join(json.dumps(_jsonable(r)) + "\n" for r in records)
        with open(self.path / name, "a") as f:
            f.write(lines)
            f.flush()

    def save_params(self, params: Any, name: str = "params.msgpack") -> Path:
        from flax import serialization

        atomic_write(self.path / name, serialization.msgpack_serialize(_to_numpy(params)))
        return self.path / name

    def set_status(self, status: str, **summary: Any) -> None:
        """Write ``status.json``; a running run records its process, so a dead one shows as dead."""
        if status == "running":
            summary = {"pid": os.getpid(), "host": socket.gethostname(), **summary}
        self.write_json("status.json", {"status": status, "updated": time.time(), **summary})

    @staticmethod
    def liveness(status: dict[str, Any]) -> str:
        """``status`` as shown: a "running" run whose process is gone on this host is "dead"."""
        state = status.get("status", "?")
        if state != "running" or status.get("host") != socket.gethostname():
            return state
        pid = status.get("pid")
        if not isinstance(pid, int):
            return state
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return "dead (killed; resume it)"
        except PermissionError:
            pass
        return state

    def save_checkpoint(self, state: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Atomically replace ``checkpoint.msgpack``: arrays in msgpack, bookkeeping as JSON text."""
        from flax import serialization

        payload = {"format": CHECKPOINT_FORMAT, "meta": json.dumps(_jsonable(meta)), "state": state}
        atomic_write(self.path / "checkpoint.msgpack", serialization.msgpack_serialize(payload))

    def truncate_jsonl(self, name: str, keep: int) -> None:
        """Keep the first ``keep`` records (work after the last checkpoint is redone on resume)."""
        path = self.path / name
        if not path.exists():
            return
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        atomic_write(path, "".join(ln + "\n" for ln in lines[:keep]))

    # --- reading -------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        path = Path(path)
        if not path.exists():
            raise RunError(f"run directory {path} does not exist")
        if not path.is_dir():
            raise RunError(f"{path} is not a run directory (it is a file)")
        if not (path / "config.json").is_file():
            raise RunError(f"{path} is not a reinforce-jax run directory (no config.json)")
        return cls(path)

    def read_json(self, name: str) -> Any:
        try:
            return json.loads((self.path / name).read_text())
        except FileNotFoundError:
            raise RunError(f"{self.path / name} is missing") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RunError(f"{self.path / name} is corrupt (not valid JSON)") from None

    def config(self) -> Config:
        data = self.read_json("config.json")
        try:
            return validate(from_dict(data["config"]))
        except UnknownSettingsError as e:
            raise RunError(f"{self.path / 'config.json'} was written by another version of "
                           f"reinforce-jax, or is corrupt: {e}") from None  # fmt: skip
        except (KeyError, TypeError, ConfigError) as e:
            raise RunError(f"{self.path / 'config.json'} is corrupt: {e}") from None

    def read_jsonl(self, name: str) -> list[dict[str, Any]]:
        path = self.path / name
        if not path.exists():
            return []
        text = path.read_text()
        lines = text.splitlines()
        records = []
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if i == len(lines) - 1 and not text.endswith("\n"):
                    break  # a process killed mid-write leaves a partial last line
                raise RunError(f"{path} is corrupt at line {i + 1}") from None
        return records

    def load_params(self, name: str = "params.msgpack") -> Any:
        return load_params_file(self.path / name)

    def load_checkpoint(self) -> dict[str, Any] | None:
        """``{"state": leaves, **meta}`` from ``checkpoint.msgpack``, or None if there is none."""
        from flax import serialization

        path = self.path / "checkpoint.msgpack"
        if not path.exists():
            return None
        try:
            payload = serialization.msgpack_restore(path.read_bytes())
            meta = json.loads(payload["meta"])
            state = dict(payload["state"])
        except Exception:  # garbage bytes raise many kinds of errors
            raise RunError(f"checkpoint {path} is corrupt") from None
        if payload.get("format") != CHECKPOINT_FORMAT or not isinstance(meta, dict):
            raise RunError(f"checkpoint {path} has an unknown format (made by another version?)")
        return {"state": state, **meta}


def load_params_file(path: str | Path) -> Any:
    """Parameters from a msgpack file (plain nested dicts of arrays; never executes code)."""
    from flax import serialization

    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RunError(f"parameter file {path} is missing") from None
    try:
        return serialization.msgpack_restore(data)
    except Exception:  # msgpack raises a variety of errors on garbage
        raise RunError(f"parameter file {path} is corrupt") from None


def _to_numpy(tree: Any) -> Any:
    import jax

    return jax.tree.map(np.asarray, jax.device_get(tree))
