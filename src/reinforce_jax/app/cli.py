"""The ``reinforce`` command: a thin layer over trainers and run files.

Bad input (unknown environment or preset, impossible settings, unusable run directory) prints one
line on stderr and exits with code 2; nothing already written is overwritten.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from reinforce_jax.config import FIELDS, PRESETS, ConfigError, load_config_file, make_config

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and exit code 2, like every other bad input
        print(f"reinforce: error: {message} (see reinforce --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="reinforce",
        description="REINFORCE policy gradients in JAX: train, from the notebook's procedure to a "
        "fully compiled run.",
    )
    from reinforce_jax import __version__

    parser.add_argument("--version", action="version", version=f"reinforce-jax {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    t = sub.add_parser("train", help="train a policy; writes a run directory")
    t.add_argument("--env", help="gymnasium id with a Discrete action space (default CartPole-v1)")
    t.add_argument("--preset", help=f"one of: {', '.join(PRESETS)} (default: default)")
    t.add_argument("--seed", type=int, help="random seed (default 0)")
    t.add_argument("--num-seeds", type=int, help="train seeds seed..seed+K-1 together (compiled)")
    t.add_argument("--total-steps", type=int, help="environment-step budget per seed")
    t.add_argument("--stop-when-solved", action="store_true", default=None,
                   help="stop at the first evaluation meeting the solve check")  # fmt: skip
    t.add_argument("--trainer", choices=("auto", "compiled", "host", "notebook"))
    t.add_argument("--run-dir", help="where to write the run (default runs/<generated name>)")
    t.add_argument("--config", help="JSON or TOML file of config settings")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, e.g. --set learning_rate=0.01")  # fmt: skip
    t.add_argument(
        "--resume", metavar="RUN", help="continue an interrupted run from its checkpoint"
    )
    t.add_argument("--quiet", action="store_true", help="print only the final summary")
    t.add_argument("--track", action="store_true", help="also log to Weights & Biases")

    e = sub.add_parser("evaluate", help="evaluate a run's or a shipped policy")
    _policy_source(e)
    e.add_argument("--episodes", type=int, default=100)
    e.add_argument("--json", action="store_true", help="print one JSON object")

    v = sub.add_parser("video", help="record evaluation episodes to MP4 or GIF (headless)")
    _policy_source(v)
    v.add_argument("--episodes", type=int, default=1)
    v.add_argument("--out", help="output .mp4 or .gif (default: <run>/video.mp4 or ./<env>.mp4)")
    v.add_argument("--every", type=int, default=1, help="keep one frame in N (smaller files)")

    p = sub.add_parser("plot", help="learning curves of one or more runs")
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.add_argument("--x", choices=("env_steps", "wall_time"), default="env_steps")
    p.add_argument("--out", help="output .png or .svg (default: <run>/curve.png, or curves.png)")
    p.add_argument("--title", default=None)

    r = sub.add_parser("runs", help="list the runs in a directory")
    r.add_argument("root", nargs="?", default="runs")
    return parser


def _policy_source(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", nargs="?", metavar="RUN", help="a run directory")
    p.add_argument("--pretrained", metavar="ENV", help="a policy shipped with the package")
    p.add_argument("--seed", type=int, default=0, help="episode i uses environment seed SEED+i")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--greedy", dest="greedy", action="store_true", default=True)
    g.add_argument("--sampled", dest="greedy", action="store_false")


def _parse_value(key: str, text: str) -> Any:
    """Convert ``--set key=value`` text to the field's type."""
    default = FIELDS[key].default
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
    env_id = args.env or values.pop("env_id", None) or "CartPole-v1"
    preset = args.preset or values.pop("preset", None) or "default"
    values.pop("env_id", None)
    values.pop("preset", None)
    return env_id, preset, values


def enable_compilation_cache() -> None:
    """JAX's persistent compilation cache in a user cache directory (REINFORCE_JAX_CACHE=off disables)."""
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


def cmd_train(args: argparse.Namespace) -> int:
    from reinforce_jax.app.rundir import RunDir
    from reinforce_jax.app.session import run_training
    from reinforce_jax.envs.registry import env_spec, resolve_env_id

    if args.resume is not None:
        if not args.resume.strip():
            raise ConfigError("--resume needs a run directory, got an empty string")
        given = [f"--{k.replace('_', '-')}" for k in ("env", "preset", "seed", "num_seeds",
                 "total_steps", "stop_when_solved", "trainer", "run_dir", "config")
                 if getattr(args, k) is not None] + (["--set"] if args.set else [])  # fmt: skip
        if given:
            raise ConfigError(
                f"--resume continues a run with its own saved settings; {', '.join(given)} "
                "cannot change them"
            )
        cfg = RunDir.open(args.resume).config()
        enable_compilation_cache()
        try:
            run_training(cfg, env_spec(cfg.env_id), args.resume, quiet=args.quiet, resume=True,
                         track=args.track)  # fmt: skip
        except KeyboardInterrupt:
            return 130
        return 0

    env_id, preset, overrides = overrides_from_args(args)
    env_id, notice = resolve_env_id(env_id)
    if notice:
        print(notice, file=sys.stderr)
    cfg = make_config(env_id, preset, overrides)
    spec = env_spec(env_id)
    enable_compilation_cache()
    try:
        run_training(cfg, spec, args.run_dir, quiet=args.quiet, track=args.track)
    except KeyboardInterrupt:
        return 130  # the session saved a checkpoint and printed how to resume
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

    from reinforce_jax.envs.registry import env_spec
    from reinforce_jax.evaluate import format_summary, summarize_returns
    from reinforce_jax.policies import evaluate_policy

    if args.episodes <= 0:
        raise ConfigError(f"--episodes must be positive, got {args.episodes}")
    cfg, params, label = load_policy(args)
    spec = env_spec(cfg.env_id)
    returns = evaluate_policy(cfg, params, cfg.env_id, args.episodes, args.seed, args.greedy)
    named = {k: v for k, v in spec.thresholds.items() if k != "solve"}
    summary = summarize_returns(cfg.env_id, returns, spec.solve_threshold, args.greedy, args.seed,
                                named)  # fmt: skip
    summary["source"] = label
    if args.json:
        print(json.dumps(summary, allow_nan=False))
    else:
        print(format_summary(summary))
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
    frames, returns, fps = record(cfg, params, cfg.env_id, args.episodes, args.seed, args.greedy)
    write_video(frames, out, fps, args.every)
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
    curves, envs, thresholds = [], set(), set()
    for run in runs:
        cfg = run.config()
        envs.add(cfg.env_id)
        facts = run.read_json("config.json").get("env", {})
        thresholds.add(facts.get("solve_threshold"))
        label = run.path.name if len(runs) > 1 else cfg.env_id
        curves.append((label, run.read_jsonl("train.jsonl"), run.read_jsonl("eval.jsonl")))
    title = args.title or f"REINFORCE on {', '.join(sorted(envs))}"
    threshold = thresholds.pop() if len(thresholds) == 1 else None
    try:
        plot_curves(curves, out, x=args.x, title=title, threshold=threshold)
    except PermissionError:
        raise ConfigError(f"cannot write {out}: permission denied") from None
    print(out)
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
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
            rows.append((path.name, "?", "?", "?", "?", "corrupt"))
            continue
        steps = train[-1].get("env_steps") if train else 0
        best = max((e["eval_mean"] for e in evals), default=None)
        rows.append((path.name, cfg.env_id, cfg.trainer, str(steps),
                     "-" if best is None else f"{best:.1f}", status.get("status", "?")))  # fmt: skip
    header = ("run", "env", "trainer", "env steps", "best eval", "status")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    commands = {"train": cmd_train, "evaluate": cmd_evaluate, "video": cmd_video,
                "plot": cmd_plot, "runs": cmd_runs}  # fmt: skip
    try:
        return commands[args.command](args)
    except ConfigError as e:
        print(f"reinforce: error: {e}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
