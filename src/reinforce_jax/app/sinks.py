"""Where training metrics go besides the run directory's JSONL: progress bar, TensorBoard, W&B.

Metric names follow CleanRL's conventions so dashboards look familiar: ``charts/episodic_return``,
``losses/policy_loss``, ``eval/mean``, ... (prefixed ``seed<N>/`` when several seeds train together).
"""

from __future__ import annotations

import numbers
import sys
import time
from pathlib import Path
from typing import Any

from reinforce_jax.config import Config
from reinforce_jax.errors import ConfigError

# JSONL key -> logged name.
TRAIN_NAMES = {
    "episode_return": "charts/episodic_return",
    "episode_length": "charts/episodic_length",
    "learning_rate": "charts/learning_rate",
    "sps": "charts/SPS",
    "loss": "losses/loss",
    "policy_loss": "losses/policy_loss",
    "value_loss": "losses/value_loss",
    "entropy": "losses/entropy",
    "grad_norm": "losses/grad_norm",
}
EVAL_NAMES = {"eval_mean": "eval/mean", "eval_std": "eval/std", "eval_min": "eval/min",
              "eval_max": "eval/max"}  # fmt: skip


def _scalars(row: dict[str, Any], names: dict[str, str], multi_seed: bool) -> dict[str, float]:
    prefix = f"seed{row.get('seed', 0)}/" if multi_seed else ""
    out = {}
    for key, name in names.items():
        v = row.get(key)
        # numbers.Real covers NumPy scalars too (np.float32 is not a Python float).
        if isinstance(v, numbers.Real) and not isinstance(v, bool) and v == v:  # skip NaN
            out[prefix + name] = float(v)
    return out


class TensorBoardSink:
    """Event files under ``<run>/tb``, written by this process (tensorboardX's record format and
    protos: no TensorFlow needed).

    Several seeds write one run each (``tb/seed<N>``) under the same chart names, so TensorBoard
    overlays them on one chart per metric instead of drawing a chart per seed; their training
    scalars are logged once per chunk (the chunk's last update). Each row is one event holding all
    its scalars, written synchronously: tensorboardX's ``SummaryWriter`` sends every scalar
    through a multiprocessing queue and a thread per writer, which for 64 seeds cost more CPU than
    the writes themselves (1.9 s against 0.3 s for 2,700 rows of 14 scalars, one core).
    """

    FLUSH_SECS = 5.0  # a flush per row and seed cost more than the writes (64 seeds)

    def __init__(self, path: Path, cfg: Config, purge_step: int | None = None):
        from tensorboardX.event_file_writer import EventsWriter
        from tensorboardX.proto.event_pb2 import Event, SessionLog
        from tensorboardX.proto.summary_pb2 import Summary
        from tensorboardX.summary import text

        # Imported here, not at module level: `reinforce runs` and friends never need them.
        self.EventsWriter, self.Event, self.SessionLog, self.Summary = (
            EventsWriter, Event, SessionLog, Summary)  # fmt: skip
        self.flushed = time.monotonic()
        # On resume, TensorBoard drops what the killed process logged after the checkpoint.
        self.purge_step = purge_step
        self.root = path / "tb"
        self.multi = cfg.num_seeds > 1
        self.writers: dict[int, Any] = {}
        rows = "\n".join(f"|{k}|{v}|" for k, v in cfg.to_dict().items())
        self._write(cfg.seed, 0, text("config", f"|setting|value|\n|-|-|\n{rows}"))

    def _writer(self, seed: int) -> Any:
        if seed not in self.writers:
            Event, SessionLog = self.Event, self.SessionLog
            logdir = self.root / f"seed{seed}" if self.multi else self.root
            logdir.mkdir(parents=True, exist_ok=True)
            writer = self.EventsWriter(str(logdir / "events"))
            if self.purge_step is not None:  # what SummaryWriter(purge_step=...) writes
                writer.write_event(Event(step=self.purge_step, file_version="brain.Event:2"))
                writer.write_event(Event(step=self.purge_step,
                                         session_log=SessionLog(status=SessionLog.START)))  # fmt: skip
            self.writers[seed] = writer
        return self.writers[seed]

    def _write(self, seed: int, step: int, summary: Any) -> None:
        event = self.Event(wall_time=time.time(), step=step, summary=summary)
        self._writer(seed).write_event(event)

    def log(self, rows: list[dict[str, Any]], names: dict[str, str]) -> None:
        Summary = self.Summary
        if self.multi and names is TRAIN_NAMES:
            # Many seeds: each seed's last update of the event only, so logging stays a small
            # fraction of training whatever the seed count (train.jsonl keeps every update).
            rows = list({int(r.get("seed", 0)): r for r in rows}.values())
        for row in rows:
            values = [Summary.Value(tag=name, simple_value=value)
                      for name, value in _scalars(row, names, False).items()]  # fmt: skip
            if values:
                seed = int(row.get("seed", 0))
                self._write(seed, int(row.get("env_steps", 0)), Summary(value=values))
        if time.monotonic() - self.flushed > self.FLUSH_SECS:  # readable while training runs
            for writer in self.writers.values():
                writer.flush()
            self.flushed = time.monotonic()

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


class WandbSink:
    """Weights & Biases, only when installed and asked for with ``--track``."""

    def __init__(self, path: Path, cfg: Config):
        try:
            import wandb
        except ImportError:
            raise ConfigError("tracking needs Weights & Biases: pip install wandb") from None
        self.wandb = wandb
        self.run = wandb.init(project="reinforce-jax", name=path.name, config=cfg.to_dict(),
                              dir=str(path))  # fmt: skip
        self.multi = cfg.num_seeds > 1

    def log(self, rows: list[dict[str, Any]], names: dict[str, str]) -> None:
        for row in rows:
            data = _scalars(row, names, self.multi)
            if data:
                self.run.log({**data, "global_step": int(row.get("env_steps", 0))})

    def close(self) -> None:
        self.run.finish()


class ProgressSink:
    """A rich progress bar on stderr: units done, env steps, recent return, steps/s, time left."""

    def __init__(self, total: int, unit: str):
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(),
            TextColumn("{task.completed}/{task.total} " + unit),
            TextColumn("{task.fields[steps]:>10} steps"), TextColumn("return {task.fields[ret]}"),
            TextColumn("{task.fields[sps]} steps/s"), TimeRemainingColumn(),
            transient=True, console=None,
        )  # fmt: skip
        self.progress.start()
        self.task = self.progress.add_task("train", total=total, steps=0, ret="-", sps="-")
        self.unit_key = "episode" if unit == "episodes" else "update"

    def log(self, rows: list[dict[str, Any]], names: dict[str, str]) -> None:
        if names is not TRAIN_NAMES or not rows:
            return
        last = rows[-1]
        ret = last.get("episode_return")
        self.progress.update(
            self.task, completed=int(last.get(self.unit_key, 0)) + (self.unit_key == "episode"),
            steps=int(last.get("env_steps", 0)), sps=f"{last.get('sps', 0):,.0f}",
            ret="-" if ret is None or ret != ret else f"{ret:.1f}",
        )  # fmt: skip

    def close(self) -> None:
        self.progress.stop()


def notebook_shell() -> Any:
    """The running Jupyter kernel's IPython shell (Jupyter, JupyterLab, VS Code, Colab), or None."""
    ipython = sys.modules.get("IPython")  # never imported here: only a running kernel has it
    shell = ipython.get_ipython() if ipython is not None else None
    return shell if shell is not None and hasattr(shell, "kernel") else None


class NotebookProgressSink:
    """The progress bar in a Jupyter notebook (where stderr is no terminal): one HTML display,
    updated in place at most every ``interval`` seconds; no widget library needed."""

    def __init__(self, total: int, unit: str, interval: float = 0.25):
        from IPython.display import display

        self.total, self.unit, self.interval = total, unit, interval
        self.unit_key = "episode" if unit == "episodes" else "update"
        self.start = time.perf_counter()
        self.shown = 0.0
        self.state = {"done": 0, "steps": 0, "ret": "-", "sps": "-"}
        self.handle = display(_Html(self._html()), display_id=True)

    def _html(self) -> str:
        s, total = self.state, max(self.total, 1)
        elapsed = time.perf_counter() - self.start
        left = elapsed * (total - s["done"]) / s["done"] if s["done"] else None
        eta = "-" if left is None else f"{int(left) // 60}:{int(left) % 60:02d} left"
        return (f"<progress value='{s['done']}' max='{total}' style='width:30%'></progress> "
                f"<code>train {s['done']}/{self.total} {self.unit} · {s['steps']:,} steps · "
                f"return {s['ret']} · {s['sps']} steps/s · {eta}</code>")  # fmt: skip

    def log(self, rows: list[dict[str, Any]], names: dict[str, str]) -> None:
        if names is not TRAIN_NAMES or not rows:
            return
        last = rows[-1]
        ret = last.get("episode_return")
        self.state = {"done": int(last.get(self.unit_key, 0)) + (self.unit_key == "episode"),
                      "steps": int(last.get("env_steps", 0)), "sps": f"{last.get('sps', 0):,.0f}",
                      "ret": "-" if ret is None or ret != ret else f"{ret:.1f}"}  # fmt: skip
        now = time.perf_counter()
        if now - self.shown >= self.interval:
            self.shown = now
            self.handle.update(_Html(self._html()))

    def close(self) -> None:
        self.handle.update(_Html(self._html()))  # the last state stays visible


class _Html:
    """HTML for the notebook, with a plain-text fallback for frontends that show only text."""

    def __init__(self, html: str):
        self.html = html

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        import re

        return re.sub(r"<[^>]+>", "", self.html).strip()


def make_sinks(
    path: Path,
    cfg: Config,
    total: int,
    unit: str,
    quiet: bool,
    track: bool,
    purge_step: int | None = None,
) -> list:
    sinks: list[Any] = [TensorBoardSink(path, cfg, purge_step)]
    if track:
        sinks.append(WandbSink(path, cfg))
    if not quiet and sys.stderr.isatty():
        sinks.append(ProgressSink(total, unit))
    elif not quiet and notebook_shell() is not None:
        sinks.append(NotebookProgressSink(total, unit))
    return sinks
