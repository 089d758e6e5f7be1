"""The Python API, the one the ``reinforce`` command itself calls.

::

    import reinforce_jax as rj

    run = rj.train("CartPole-v1", seed=3, stop_when_solved=True)  # a Run, backed by runs/<name>/
    run.evaluate(episodes=100)      # the fields of `reinforce evaluate RUN --json`
    run.plot()                      # a matplotlib Figure of the learning curves
    run.video()                     # an MP4 file (shown inline in Jupyter)
    rj.load_run(run.path)           # the same run, read back from its directory
    rj.pretrained("LunarLander-v3") # a policy shipped with the package

Bad settings raise :class:`~reinforce_jax.errors.ConfigError` (never ``SystemExit``). Heavy
modules (JAX, gymnasium, matplotlib) are imported only when a function needs them.
"""

from __future__ import annotations

import html
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reinforce_jax.config import Config
from reinforce_jax.errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from reinforce_jax.app.distributed import Processes
    from reinforce_jax.app.rundir import RunDir

__all__ = ["Metrics", "Run", "evaluate_seeds", "load_run", "pretrained", "train"]


def train(
    env_id: str = "CartPole-v1",
    *,
    preset: str = "default",
    seed: int = 0,
    run_dir: str | Path | None = None,
    quiet: bool = False,
    track: bool = False,
    processes: Processes | None = None,
    **config_overrides: Any,
) -> Run:
    """Train a policy into a new run directory and return it as a :class:`Run`.

    ``config_overrides`` are config fields (``reinforce train --list-settings`` lists them), for
    example ``total_steps=20_000, num_seeds=8, stop_when_solved=True, hidden_sizes=[64, 64]``;
    values must have the field's type. ``run_dir`` defaults to ``runs/<generated name>`` and is
    never overwritten. Console lines go to stdout (``quiet`` keeps only the closing summary); a
    progress bar shows on a terminal or in Jupyter. Impossible settings raise
    :class:`ConfigError` before anything is written.

    ``processes`` joins several processes (:mod:`reinforce_jax.app.distributed`) that share the
    seeds; process 0 writes ``run_dir`` and the others return a :class:`Run` of the same path.
    Calling ``jax.distributed.initialize()`` before ``train`` does the same.
    """
    from reinforce_jax.app.cli import enable_compilation_cache
    from reinforce_jax.app.session import run_training
    from reinforce_jax.config import make_config
    from reinforce_jax.envs.registry import env_spec, resolve_env_id

    env_id, notice = resolve_env_id(env_id)
    if notice:
        print(notice, file=sys.stderr)
    cfg = make_config(env_id, preset, {**config_overrides, "seed": seed})
    spec = env_spec(env_id, cfg.env_args)
    if processes is not None:  # refused before joining: a lone process then need not wait
        from reinforce_jax.app.distributed import initialize
        from reinforce_jax.trainers.distributed import check_processes

        check_processes(cfg, spec, processes.num_processes)
        initialize(processes)
    enable_compilation_cache()
    run = run_training(cfg, spec, run_dir, quiet=quiet, track=track)
    # Only process 0 wrote config.json; the others know the config they trained.
    saved = run.config() if (run.path / "config.json").is_file() else cfg
    return Run(saved, path=run.path)


def sweep(
    env_id: str = "CartPole-v1",
    grid: dict[str, list[Any]] | None = None,
    *,
    preset: str = "default",
    seed: int = 0,
    num_seeds: int = 8,
    run_dir: str | Path | None = None,
    quiet: bool = False,
    **config_overrides: Any,
) -> dict[str, Any]:
    """Train every combination of ``grid``'s values x ``num_seeds`` seeds; the summary, best first.

    ``grid`` maps config fields to lists of values, e.g. ``{"learning_rate": [0.003, 0.01],
    "entropy_coef": [0.0, 0.01]}``; ``config_overrides`` are settings every configuration shares.
    Returns what ``summary.json`` holds (see ``reinforce sweep``); impossible settings raise
    :class:`ConfigError` before anything is written.
    """
    from reinforce_jax.app.cli import enable_compilation_cache
    from reinforce_jax.app.sweep import run_sweep
    from reinforce_jax.envs.registry import resolve_env_id

    if not grid:
        raise ConfigError("sweep needs a grid: {setting: [values, ...]}")
    env_id, notice = resolve_env_id(env_id)
    if notice:
        print(notice, file=sys.stderr)
    enable_compilation_cache()
    grid = {k: list(v) for k, v in grid.items()}
    overrides = {**config_overrides, "seed": seed, "num_seeds": num_seeds}
    return run_sweep(env_id, preset, overrides, grid, run_dir, quiet=quiet)


def load_run(path: str | Path) -> Run:
    """The run in directory ``path`` (finished, interrupted or still training)."""
    from reinforce_jax.app.rundir import RunDir

    return Run(RunDir.open(path).config(), path=path)


def pretrained(env_id: str) -> Run:
    """A policy shipped with the package (CartPole-v1, LunarLander-v3): config and parameters,
    no run directory and no metrics."""
    from reinforce_jax.envs.registry import resolve_env_id
    from reinforce_jax.policies import load_pretrained

    env_id, _ = resolve_env_id(env_id)
    cfg, params = load_pretrained(env_id)
    return Run(cfg, params=params, label=f"pretrained {env_id}")


@dataclass(frozen=True)
class Metrics:
    """A run's metric rows as written to ``train.jsonl`` and ``eval.jsonl`` (one dict a row)."""

    train: list[dict[str, Any]] = field(default_factory=list)
    eval: list[dict[str, Any]] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"Metrics(train: {len(self.train)} rows, eval: {len(self.eval)} rows)"


class Run:
    """A trained policy: a run directory (:func:`train`, :func:`load_run`) or a shipped policy
    (:func:`pretrained`, which has no ``path`` and no ``metrics``).

    ``params`` is the policy's parameters; for a run of several seeds it holds every seed, stacked
    along a leading axis (seeds ``config.seed``, ``config.seed + 1``, ...: ``seeds``), as
    ``params_all_seeds.msgpack`` does; :meth:`policy` picks one seed's.
    """

    def __init__(
        self,
        config: Config,
        *,
        path: str | Path | None = None,
        params: Any = None,
        label: str | None = None,
    ):
        if path is None and params is None:
            raise ConfigError("a Run needs a run directory or parameters")
        self.config = config
        self.path = None if path is None else Path(path)
        self._params = params
        self.label = label or str(self.path)

    # --- what the run holds --------------------------------------------------------------------
    def _rundir(self) -> RunDir:
        from reinforce_jax.app.rundir import RunDir

        if self.path is None:
            raise ConfigError(f"{self.label} has no run directory (no metrics or curves)")
        return RunDir.open(self.path)

    @property
    def _all_seeds(self) -> bool:
        return (
            self.path is not None
            and self.config.num_seeds > 1
            and (self.path / "params_all_seeds.msgpack").is_file()
        )

    @property
    def seeds(self) -> list[int]:
        """The training seeds whose parameters ``params`` holds."""
        cfg = self.config
        return list(range(cfg.seed, cfg.seed + cfg.num_seeds)) if self._all_seeds else [cfg.seed]

    @property
    def params(self) -> Any:
        if self._params is None:
            run = self._rundir()
            self._params = run.load_params(
                "params_all_seeds.msgpack" if self._all_seeds else "params.msgpack"
            )
        return self._params

    def policy(self, seed: int | None = None) -> Any:
        """The parameters of training seed ``seed`` (default: the first)."""
        pairs = self._seed_params(seed)
        return pairs[0][1]

    def _seed_params(self, run_seed: int | None = None) -> list[tuple[int, Any]]:
        """``[(training seed, parameters)]``: every seed, or the one asked for."""
        params, seeds = self.params, self.seeds
        if len(seeds) > 1:
            import jax

            pairs = [(s, jax.tree.map(lambda x, i=i: x[i], params)) for i, s in enumerate(seeds)]
        else:
            pairs = [(seeds[0], params)]
        if run_seed is not None:
            pairs = [(s, p) for s, p in pairs if s == run_seed]
            if not pairs:
                raise ConfigError(f"this run trained seeds {seeds}, not {run_seed}")
        return pairs

    @property
    def metrics(self) -> Metrics | None:
        """The train and evaluation rows (read afresh from the run directory; None for a shipped
        policy)."""
        if self.path is None:
            return None
        run = self._rundir()
        return Metrics(run.read_jsonl("train.jsonl"), run.read_jsonl("eval.jsonl"))

    @property
    def status(self) -> dict[str, Any] | None:
        """``status.json``: running / finished / interrupted, wall time, best evaluation, ..."""
        if self.path is None or not (self.path / "status.json").is_file():
            return None
        return self._rundir().read_json("status.json")

    # --- what a run does -----------------------------------------------------------------------
    def evaluate(
        self,
        episodes: int = 100,
        greedy: bool = True,
        seed: int = 0,
        *,
        run_seed: int | None = None,
    ) -> dict[str, Any]:
        """Evaluate on gymnasium: episode ``i`` is reset with seed ``seed + i``.

        Returns the object ``reinforce evaluate --json`` prints: ``mean``, ``std``, ``min``,
        ``max``, ``ci95``, ``threshold``, ``solved``, ``returns``, ...; for several training seeds
        each seed's under ``per_seed`` and their ``aggregate`` (``run_seed`` picks one seed).
        """
        import numbers

        if (
            not isinstance(episodes, numbers.Integral)
            or isinstance(episodes, bool)
            or episodes <= 0
        ):
            raise ConfigError(f"episodes must be a positive integer, got {episodes!r}")
        return evaluate_seeds(self.config, self._seed_params(run_seed), int(episodes), seed, greedy,
                              self.label)  # fmt: skip

    def plot(
        self, x: str = "env_steps", *, window: int | None = None, title: str | None = None
    ) -> Figure:
        """The learning curves (as ``reinforce plot RUN``) as a matplotlib Figure; ``x`` is
        ``env_steps``, ``wall_time`` or ``episodes``. Save it with ``fig.savefig(path)``."""
        from reinforce_jax.app.plots import curves_figure

        if x not in ("env_steps", "wall_time", "episodes"):
            raise ConfigError(f"x must be env_steps, wall_time or episodes, got {x!r}")
        run = self._rundir()
        saved = run.read_json("config.json")
        window = window or saved.get("run", {}).get("curve_window", 5)
        metrics = self.metrics
        assert metrics is not None
        fig = curves_figure([(self.config.env_id, metrics.train, metrics.eval)], x=x,
                            title=title or f"REINFORCE on {self.config.env_id}",
                            threshold=saved.get("env", {}).get("solve_threshold"), window=window)  # fmt: skip
        _enable_figure_display()
        return fig

    def video(
        self,
        path: str | Path | None = None,
        *,
        episodes: int = 1,
        seed: int = 0,
        greedy: bool = True,
        every: int = 1,
        run_seed: int | None = None,
    ) -> Path:
        """Record ``episodes`` evaluation episodes to ``path`` (.mp4 or .gif; default
        ``<run>/video.mp4`` or ``./<env>.mp4``), headless; in Jupyter the video is also shown."""
        from reinforce_jax.app.sinks import notebook_shell
        from reinforce_jax.app.video import record, write_video

        if episodes <= 0 or every <= 0:
            raise ConfigError("episodes and every must be positive")
        if path is None:
            path = self.path / "video.mp4" if self.path else Path(f"{self.config.env_id}.mp4")
        path = Path(path)
        if path.suffix.lower() not in (".mp4", ".gif"):
            raise ConfigError(f"video output must end in .mp4 or .gif, got {path.name!r}")
        params = self.policy(run_seed)
        frames, _, fps = record(self.config, params, self.config.env_id, episodes, seed, greedy,
                                every)  # fmt: skip
        write_video(frames, path, fps)
        if notebook_shell() is not None:
            from IPython.display import Image, Video, display

            if path.suffix.lower() == ".gif":
                display(Image(filename=str(path)))
            else:
                display(Video(str(path), embed=True, html_attributes="controls loop"))
        return path

    # --- how a run shows -----------------------------------------------------------------------
    def _summary(self) -> list[tuple[str, str]]:
        cfg = self.config
        rows = [("environment", cfg.env_id), ("source", self.label),
                ("trainer", f"{cfg.trainer} (preset {cfg.preset})"),
                ("network", f"{'x'.join(map(str, cfg.hidden_sizes))} {cfg.activation}")]  # fmt: skip
        if cfg.num_seeds > 1:
            rows.append(("seeds", f"{cfg.seed}..{cfg.seed + cfg.num_seeds - 1}"))
        else:
            rows.append(("seed", str(cfg.seed)))
        status = self.status
        if status:
            state = status.get("status", "?")
            if status.get("wall_time") is not None:
                state += f" ({status['wall_time']:.1f} s)"
            rows.append(("status", state))
            if status.get("env_steps") is not None:
                rows.append(("env steps", f"{status['env_steps']:,} per seed"))
            if status.get("best_eval") is not None:
                rows.append(("best evaluation", f"{status['best_eval']:.1f}"))
            first = status.get("first_solve")
            if status.get("num_seeds", 1) > 1:
                rows.append(("solved", f"{status.get('solved_seeds', 0)}/{status['num_seeds']} "
                             "seeds"))  # fmt: skip
            elif status.get("status") == "finished":
                rows.append(("solved", f"yes, first at {first['env_steps']:,} env steps"
                             if first else "no"))  # fmt: skip
        return rows

    def __repr__(self) -> str:
        return "Run(" + ", ".join(f"{k}: {v}" for k, v in self._summary()) + ")"

    def _repr_html_(self) -> str:
        cells = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
            f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
            for k, v in self._summary()
        )
        return f"<table><caption style='text-align:left'><b>reinforce-jax Run</b></caption>{cells}</table>"


def evaluate_seeds(
    cfg: Config,
    per_seed: list[tuple[int, Any]],
    episodes: int,
    seed: int,
    greedy: bool,
    label: str,
) -> dict[str, Any]:
    """Evaluate each ``(training seed, parameters)``: one seed's summary, or for several seeds
    each seed's summary (without returns) and their aggregate; ``reinforce evaluate --json``
    prints exactly this."""
    from reinforce_jax.envs.registry import env_spec
    from reinforce_jax.evaluate import summarize_returns
    from reinforce_jax.policies import evaluate_policy
    from reinforce_jax.stats import aggregate

    spec = env_spec(cfg.env_id, cfg.env_args)
    named = {k: v for k, v in spec.thresholds.items() if k != "solve"}
    summaries = []
    for train_seed, p in per_seed:
        returns = evaluate_policy(cfg, p, cfg.env_id, episodes, seed, greedy)
        summary = summarize_returns(cfg.env_id, returns, spec.solve_threshold, greedy, seed, named)
        summary.update(source=label, train_seed=train_seed)
        summaries.append(summary)
    if len(summaries) == 1:
        return summaries[0]
    solved = sum(s["solved"] for s in summaries)
    return {"env": cfg.env_id, "source": label, "episodes": episodes,
            "policy": summaries[0]["policy"], "seed": seed, "num_seeds": len(summaries),
            "solved_seeds": solved, "threshold": spec.solve_threshold,
            "solved": solved == len(summaries), "aggregate": aggregate([s["mean"] for s in summaries]),
            "per_seed": [{k: v for k, v in s.items() if k != "returns"} for s in summaries]}  # fmt: skip


def _enable_figure_display() -> None:
    """In Jupyter, let a returned Figure show as an image even when pyplot was never imported
    (IPython registers figure formats only when the inline backend loads)."""
    from reinforce_jax.app.sinks import notebook_shell

    shell = notebook_shell()
    if shell is None:
        return
    from matplotlib.figure import Figure

    formatters = shell.display_formatter.formatters
    for mime in ("image/png", "image/svg+xml", "image/jpeg", "application/pdf"):
        try:
            formatters[mime].lookup_by_type(Figure)
            return  # the user's own figure format is in place
        except KeyError:
            pass
    from IPython.core.pylabtools import select_figure_formats

    select_figure_formats(shell, {"png"})
