"""The ``reinforce`` command: a thin layer over trainers and run files.

Bad input (unknown environment or preset, impossible settings, unusable run directory) prints one
line on stderr and exits with code 2; nothing already written is overwritten.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn

from reinforce_jax.app.distributed import add_distributed_args, processes_from_args
from reinforce_jax.config import FIELDS, PRESETS, ConfigError, load_config_file

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and exit code 2, like every other bad input
        print(f"reinforce: error: {message} (see reinforce --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def settings_table() -> str:
    """Every config field with its type, default, allowed values and meaning: one source for
    ``--list-settings`` and the README (the field documentation in ``config.py``)."""
    import dataclasses

    from reinforce_jax.config import _CHOICES, Config

    lines = []
    for f in dataclasses.fields(Config):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kind = {"tuple[int, ...]": "list of int"}.get(str(f.type), str(f.type))
        allowed = f" ({' | '.join(_CHOICES[f.name])})" if f.name in _CHOICES else ""
        lines.append(f"{f.name:24} {kind:12} default {default!r}{allowed}\n"
                     f"{'':24} {f.metadata.get('doc', '')}")  # fmt: skip
    return "\n".join(lines)


class _ListSettings(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001
        print(settings_table())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="reinforce",
        description="REINFORCE policy gradients in JAX: train, from the notebook's procedure to a "
        "fully compiled run.",
    )
    from reinforce_jax import __version__

    parser.add_argument("--version", action="version", version=f"reinforce-jax {__version__}",
                        help="print the version and exit")  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    t = sub.add_parser("train", help="train a policy; writes a run directory")
    t.add_argument("--env", help="gymnasium id with Discrete or Box actions (default CartPole-v1)")
    t.add_argument("--preset", help=f"one of: {', '.join(PRESETS)} (default: default)")
    t.add_argument("--seed", type=int, help="random seed (default 0)")
    t.add_argument("--num-seeds", type=int, help="train seeds seed..seed+K-1 together (compiled)")
    t.add_argument("--total-steps", type=int, help="environment-step budget per seed")
    t.add_argument("--stop-when-solved", action="store_true", default=None,
                   help="stop at the first evaluation meeting the solve check")  # fmt: skip
    t.add_argument("--trainer", choices=("auto", "compiled", "host", "notebook", "envpool"),
                   help="auto (default): compiled where a JAX-native environment exists, else host")  # fmt: skip
    t.add_argument("--run-dir", help="where to write the run (default runs/<generated name>)")
    t.add_argument("--config", help="JSON or TOML file of config settings")
    t.add_argument("--env-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="an argument of the environment (gymnasium.make), e.g. continuous=false; "
                   "saved in the run's config")  # fmt: skip
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, e.g. --set learning_rate=0.01")  # fmt: skip
    t.add_argument(
        "--resume", metavar="RUN", help="continue an interrupted run from its checkpoint"
    )
    t.add_argument("--quiet", action="store_true", help="print only the final summary")
    t.add_argument("--list-settings", action=_ListSettings, nargs=0,
                   help="list every setting --set and --config accept, with its meaning and "
                   "default, and exit")  # fmt: skip
    t.add_argument("--track", action="store_true", help="also log to Weights & Biases")
    add_distributed_args(t)

    w = sub.add_parser(
        "sweep",
        help="train a grid of settings x seeds vmapped in one compiled program; "
        "reports IQM and mean with 95%% intervals per configuration",
    )
    w.add_argument("--env", help="gymnasium id with a JAX-native version (default CartPole-v1)")
    w.add_argument("--preset", help=f"one of: {', '.join(PRESETS)} (default: default)")
    w.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="values of one setting to sweep (repeat for more settings; all "
                   "combinations run), e.g. --grid learning_rate=0.003,0.01 "
                   "--grid hidden_sizes=[32,32],[64,64]")  # fmt: skip
    w.add_argument("--seed", type=int, help="first seed (default 0)")
    w.add_argument("--num-seeds", type=int, help="seeds per configuration (default 8)")
    w.add_argument("--total-steps", type=int, help="environment-step budget per seed")
    w.add_argument("--stop-when-solved", action="store_true", default=None,
                   help="stop a program once every one of its runs has solved")  # fmt: skip
    w.add_argument("--run-dir", help="where to write the sweep (default sweeps/<generated name>)")
    w.add_argument("--config", help="JSON or TOML file of base settings")
    w.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a base setting every configuration shares")  # fmt: skip
    w.add_argument("--quiet", action="store_true", help="print only the final table")
    w.set_defaults(trainer=None, env_arg=[])
    add_distributed_args(w)

    e = sub.add_parser("evaluate", help="evaluate a run's or a shipped policy")
    _policy_source(e)
    e.add_argument("--episodes", type=int, default=100, help="episodes per policy (default 100)")
    e.add_argument("--run-seed", type=int, metavar="S",
                   help="of a multi-seed run, evaluate only training seed S (default: every seed)")  # fmt: skip
    e.add_argument("--json", action="store_true", help="print one JSON object")

    v = sub.add_parser("video", help="record evaluation episodes to MP4 or GIF (headless)")
    _policy_source(v)
    v.add_argument("--episodes", type=int, default=1, help="episodes to record (default 1)")
    v.add_argument("--out", help="output .mp4 or .gif (default: <run>/video.mp4 or ./<env>.mp4)")
    v.add_argument("--every", type=int, default=1, help="keep one frame in N (smaller files)")

    p = sub.add_parser("plot", help="learning curves of one or more runs")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories to draw together")
    p.add_argument(
        "--x",
        choices=("env_steps", "wall_time", "episodes"),
        default="env_steps",
        help="the horizontal axis (default env_steps)",
    )
    p.add_argument("--smooth", type=int, metavar="N",
                   help="moving-average window of the training curve (default: the run's own, "
                   "as in its curve.png)")  # fmt: skip
    p.add_argument("--out", help="output .png or .svg (default: <run>/curve.png, or curves.png)")
    p.add_argument("--title", default=None, help="figure title")

    r = sub.add_parser("runs", help="list the runs in a directory")
    r.add_argument("root", nargs="?", default="runs", help="the folder of runs (default runs/)")
    return parser


def _policy_source(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", nargs="?", metavar="RUN", help="a run directory")
    p.add_argument("--pretrained", metavar="ENV", help="a policy shipped with the package")
    p.add_argument("--seed", type=int, default=0, help="episode i uses environment seed SEED+i")
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--greedy",
        dest="greedy",
        action="store_true",
        default=True,
        help="act with the distribution's mode (default)",
    )
    g.add_argument("--sampled", dest="greedy", action="store_false",
                   help="sample actions from the policy instead")  # fmt: skip


def _parse_value(key: str, text: str) -> Any:
    """Convert ``--set key=value`` text to the field's type."""
    default = FIELDS[key].default
    if key == "env_args":
        raise ValueError(text)  # --env-arg KEY=VALUE sets these one by one
    if key == "hidden_sizes":
        return tuple(int(v) for v in text.replace("[", "").replace("]", "").split(",") if v.strip())
    if isinstance(default, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(text)
    if isinstance(default, int):
        return int(text)
    if isinstance(default, float):
        return float(text)
    return text


def _literal(text: str) -> Any:
    """``--env-arg`` values: true/false, numbers, or else the text itself."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def overrides_from_args(args: argparse.Namespace) -> tuple[str, str, dict[str, Any]]:
    """``(env_id, preset, overrides)``: the file's settings, then ``--set``, then the flags."""
    values: dict[str, Any] = {}
    if args.config:
        values.update(load_config_file(args.config))
    for item in args.set:
        key, sep, text = item.partition("=")
        if not sep or key not in FIELDS:
            raise ConfigError(f"--set expects KEY=VALUE with a config field as KEY, got {item!r}")
        try:
            values[key] = _parse_value(key, text)
        except ValueError:
            raise ConfigError(
                f"--set {key}: cannot read {text!r} as {type(FIELDS[key].default).__name__}"
            ) from None
    for key in ("seed", "num_seeds", "total_steps", "stop_when_solved", "trainer"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    if args.env_arg:
        env_args = dict(values.get("env_args") or {})
        for item in args.env_arg:
            key, sep, text = item.partition("=")
            if not sep or not key:
                raise ConfigError(f"--env-arg expects KEY=VALUE, got {item!r}")
            env_args[key] = _literal(text)
        values["env_args"] = env_args
    env_id = args.env or values.pop("env_id", None) or "CartPole-v1"
    preset = args.preset or values.pop("preset", None) or "default"
    values.pop("env_id", None)
    values.pop("preset", None)
    return env_id, preset, values


def enable_compilation_cache() -> None:
    """JAX's persistent compilation cache in a user cache directory (REINFORCE_JAX_CACHE=off disables),
    with the trainers' exported (traced and lowered) programs beside it in ``programs/``."""
    where = os.environ.get("REINFORCE_JAX_CACHE")
    if where == "off":
        return
    import jax

    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    path = Path(where) if where else base / "reinforce-jax" / "jax"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # a read-only home only costs compile time
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    from reinforce_jax.trainers import export_cache

    export_cache.set_directory(path / "programs")


def cmd_train(args: argparse.Namespace) -> int:
    from reinforce_jax.app.rundir import RunDir
    from reinforce_jax.app.session import run_training
    from reinforce_jax.envs.registry import env_spec

    processes = processes_from_args(args)
    if args.resume is not None:
        if not args.resume.strip():
            raise ConfigError("--resume needs a run directory, got an empty string")
        names = ("env", "preset", "seed", "num_seeds", "stop_when_solved", "trainer", "run_dir",
                 "config")  # fmt: skip
        given = [f"--{k.replace('_', '-')}" for k in names if getattr(args, k) is not None]
        given += (["--set"] if args.set else []) + (["--env-arg"] if args.env_arg else [])
        if given:
            raise ConfigError(
                f"--resume continues a run with its own saved settings; {', '.join(given)} "
                "cannot change them (--total-steps can extend it)"
            )
        cfg = RunDir.open(args.resume).config()
        extend = args.total_steps is not None
        if extend:
            if args.total_steps <= cfg.total_steps:
                raise ConfigError(
                    f"--total-steps with --resume extends a run: give more than its "
                    f"{cfg.total_steps:,} steps"
                )
            # Keep the learning dynamics of the steps already run: the decay keeps its horizon.
            horizon = cfg.lr_decay_steps or cfg.total_steps
            cfg = cfg.replace(total_steps=args.total_steps, lr_decay_steps=horizon)
        spec = env_spec(cfg.env_id, cfg.env_args)
        if processes is not None:  # refused before joining: a lone process then need not wait
            from reinforce_jax.app.distributed import initialize
            from reinforce_jax.trainers.distributed import check_processes

            check_processes(cfg, spec, processes.num_processes)
            initialize(processes)
        enable_compilation_cache()
        try:
            run_training(cfg, spec, args.resume, quiet=args.quiet,
                         resume=True, track=args.track, extend=extend)  # fmt: skip
        except KeyboardInterrupt as e:
            return 128 + getattr(e, "signum", 2)  # checkpointed; the session said how to resume
        return 0

    from reinforce_jax.app.api import train

    env_id, preset, overrides = overrides_from_args(args)
    try:  # the Python API: resolves the id, builds and checks the config, trains
        train(env_id, preset=preset, run_dir=args.run_dir, quiet=args.quiet, track=args.track,
              processes=processes, **overrides)  # fmt: skip
    except KeyboardInterrupt as e:
        return 128 + getattr(e, "signum", 2)  # the session saved a checkpoint, said how to resume
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from reinforce_jax.app.sweep import parse_grid, run_sweep
    from reinforce_jax.envs.registry import resolve_env_id

    processes = processes_from_args(args)
    grid = parse_grid(args.grid, _parse_value)
    env_id, preset, overrides = overrides_from_args(args)
    overrides.setdefault("num_seeds", 8)
    env_id, notice = resolve_env_id(env_id)
    if notice:
        print(notice, file=sys.stderr)
    if processes is not None:  # refused before joining: a lone process then need not wait
        from reinforce_jax.app.distributed import initialize
        from reinforce_jax.trainers.distributed import check_split
        from reinforce_jax.trainers.sweep import plan_sweep

        plan = plan_sweep(env_id, preset, overrides, grid)
        if plan.trainer != "compiled":
            raise ConfigError(f"several processes need the compiled trainer; this sweep runs on "
                              f"{plan.trainer}")  # fmt: skip
        for group in plan.groups:
            check_split(len(group.config_ids) * len(plan.seeds), processes.num_processes,
                        "runs (configurations x seeds) of a program")  # fmt: skip
        initialize(processes)
    enable_compilation_cache()
    try:
        run_sweep(env_id, preset, overrides, grid, args.run_dir, quiet=args.quiet)
    except KeyboardInterrupt as e:  # what was evaluated is summarised in the sweep directory
        print(f"reinforce: {e}", file=sys.stderr)
        return 128 + getattr(e, "signum", 2)
    return 0


def load_policy(args: argparse.Namespace) -> tuple[Any, Any, str]:
    """``(config, params, label)`` from ``RUN`` or ``--pretrained ENV``."""
    from reinforce_jax.app.rundir import RunDir

    if bool(args.run) == bool(args.pretrained):
        raise ConfigError(
            "give either a run directory or --pretrained ENV, not both"
            if args.run
            else "give either a run directory (e.g. runs/NAME; 'reinforce runs' lists them) "
            "or a shipped policy (--pretrained CartPole-v1)"
        )
    if args.pretrained:
        from reinforce_jax.envs.registry import resolve_env_id
        from reinforce_jax.policies import load_pretrained

        env_id, _ = resolve_env_id(args.pretrained)
        cfg, params = load_pretrained(env_id)
        return cfg, params, f"pretrained {env_id}"
    run = RunDir.open(args.run)
    cfg = run.config()
    return cfg, run.load_params(), str(run.path)


def cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from reinforce_jax.app.api import Run
    from reinforce_jax.evaluate import format_summary
    from reinforce_jax.stats import format_aggregate

    if args.episodes <= 0:
        raise ConfigError(f"--episodes must be positive, got {args.episodes}")
    cfg, params, label = load_policy(args)
    # The Python API's evaluation (Run.evaluate): every seed of a multi-seed run, or --run-seed.
    run = Run(cfg, path=args.run, params=None if args.run else params, label=label)
    result = run.evaluate(args.episodes, args.greedy, args.seed, run_seed=args.run_seed)
    if "per_seed" not in result:
        print(json.dumps(result, allow_nan=False) if args.json else format_summary(result))
        return 0
    summaries, solved, agg = result["per_seed"], result["solved_seeds"], result["aggregate"]
    if args.json:
        print(json.dumps(result, allow_nan=False))
        return 0
    print(f"{cfg.env_id}: {len(summaries)} training seeds of {label}, {args.episodes} "
          f"{result['policy']} episodes each (seed {args.seed})")  # fmt: skip
    for s in summaries:
        verdict = "" if s["threshold"] is None else ("  SOLVED" if s["solved"] else "  not solved")
        print(f"  seed {s['train_seed']}: mean {s['mean']:.2f} ± {s['std']:.2f}  "
              f"min {s['min']:.1f}  max {s['max']:.1f}{verdict}")  # fmt: skip
    print(f"  over seeds: {format_aggregate(agg)}")
    if result["threshold"] is not None:
        print(f"  verdict: {solved}/{len(summaries)} seeds solved "
              f"(solve check: mean >= {result['threshold']:g})")  # fmt: skip
    return 0


def cmd_video(args: argparse.Namespace) -> int:
    from reinforce_jax.app.video import record, write_video

    if args.episodes <= 0 or args.every <= 0:
        raise ConfigError("--episodes and --every must be positive")
    cfg, params, label = load_policy(args)
    out = Path(args.out) if args.out else (
        Path(args.run) / "video.mp4" if args.run else Path(f"{cfg.env_id}.mp4"))  # fmt: skip
    if out.suffix.lower() not in (".mp4", ".gif"):
        raise ConfigError(f"video output must end in .mp4 or .gif, got {out.name!r}")
    frames, returns, fps = record(cfg, params, cfg.env_id, args.episodes, args.seed, args.greedy,
                                  args.every)  # fmt: skip
    write_video(frames, out, fps)
    print(f"{out}: {len(returns)} episode(s) of {label}, returns {[round(r, 1) for r in returns]}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from reinforce_jax.app.plots import plot_curves
    from reinforce_jax.app.rundir import RunDir

    runs = [RunDir.open(r) for r in args.runs]
    out = Path(args.out) if args.out else (
        runs[0].path / "curve.png" if len(runs) == 1 else Path("curves.png"))  # fmt: skip
    if out.suffix.lower() not in (".png", ".svg"):
        raise ConfigError(f"plot output must end in .png or .svg, got {out.name!r}")
    if not out.parent.is_dir():
        raise ConfigError(f"cannot write {out}: directory {out.parent} does not exist")
    curves, envs, thresholds, windows = [], set(), set(), set()
    for run in runs:
        cfg = run.config()
        envs.add(cfg.env_id)
        saved = run.read_json("config.json")
        facts = saved.get("env", {})
        thresholds.add(facts.get("solve_threshold"))
        windows.add(saved.get("run", {}).get("curve_window", 5))
        label = run.path.name if len(runs) > 1 else cfg.env_id
        curves.append((label, run.read_jsonl("train.jsonl"), run.read_jsonl("eval.jsonl")))
    title = args.title or f"REINFORCE on {', '.join(sorted(envs))}"
    threshold = thresholds.pop() if len(thresholds) == 1 else None
    try:
        window = args.smooth or (windows.pop() if len(windows) == 1 else 5)
        plot_curves(curves, out, x=args.x, title=title, threshold=threshold, window=window)
    except PermissionError:
        raise ConfigError(f"cannot write {out}: permission denied") from None
    print(out)
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    import numpy as np

    from reinforce_jax.app.rundir import RunDir, RunError

    root = Path(args.root)
    if not root.is_dir():
        raise ConfigError(f"no runs directory at {root}")
    rows = []
    for path in sorted(p for p in root.iterdir() if (p / "config.json").is_file()):
        try:
            run = RunDir.open(path)
            cfg = run.config()
            status = run.read_json("status.json") if (path / "status.json").exists() else {}
            evals = run.read_jsonl("eval.jsonl")
            train = run.read_jsonl("train.jsonl")
        except RunError:
            rows.append((path.name, "?", "?", "?", "?", "?", "?", "?", "corrupt"))
            continue
        steps = max((r.get("env_steps", 0) for r in train), default=0)
        last: dict[int, float] = {}
        for e in evals:  # each seed's latest evaluation
            last[e.get("seed", cfg.seed)] = e["eval_mean"]
        final = f"{np.mean(list(last.values())):.1f}" if last else "-"
        solved_seeds = {e.get("seed", cfg.seed) for e in evals if e.get("solved")}
        wall = status.get("wall_time")
        rows.append((path.name, cfg.env_id, cfg.trainer, str(cfg.num_seeds), f"{steps:,}", final,
                     f"{len(solved_seeds)}/{cfg.num_seeds}",
                     "-" if wall is None else f"{wall:.1f}s", run.liveness(status)))  # fmt: skip
    header = ("run", "env", "trainer", "seeds", "env steps", "final eval", "solved", "wall",
              "status")  # fmt: skip
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    if rows:
        print("final eval: the mean over seeds of each seed's latest evaluation")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("train", "sweep"):  # before the heavy imports: a signal then is honoured
        from reinforce_jax.app import signals

        if signals.install():
            try:
                code = _main(args)
            finally:
                if argv is not None:  # called in-process; a whole process keeps them to its end,
                    signals.uninstall()  # so a signal during shutdown cannot kill it mid-write
            return code if argv is not None else _exit_now(code)
    return _main(args)


def _exit_now(code: int) -> NoReturn:
    """End a whole ``reinforce`` process once its work is done, without the interpreter's
    teardown of JAX's and XLA's objects (about 0.4 s of a 2.5 s warm start): the threads we
    started are joined, atexit handlers run and the streams are flushed first, as at a normal exit.
    """
    import atexit

    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _main(args: argparse.Namespace) -> int:
    commands = {"train": cmd_train, "sweep": cmd_sweep, "evaluate": cmd_evaluate,
                "video": cmd_video, "plot": cmd_plot, "runs": cmd_runs}  # fmt: skip
    try:
        return commands[args.command](args)
    except ConfigError as e:
        print(f"reinforce: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:  # disk full, read-only file system, a directory deleted under us
        where = f" {e.filename}" if e.filename else ""
        print(f"reinforce: error: cannot read or write{where}: {e.strerror or e}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:
        from reinforce_jax.app.session import Diverged

        if isinstance(e, Diverged):
            print(f"reinforce: error: {e}", file=sys.stderr)
            return 1
        if "RESOURCE_EXHAUSTED" in str(e) or isinstance(e, MemoryError):
            print("reinforce: error: out of memory: these settings (network size, num_seeds, "
                  "num_envs) need more memory than this machine has", file=sys.stderr)  # fmt: skip
            return EXIT_USAGE
        raise


if __name__ == "__main__":
    sys.exit(main())
