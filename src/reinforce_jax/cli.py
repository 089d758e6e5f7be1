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
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    t = sub.add_parser("train", help="train a policy; writes a run directory")
    t.add_argument("--env", default="CartPole-v1", help="gymnasium id with a Discrete action space")
    t.add_argument("--preset", default="default", help=f"one of: {', '.join(PRESETS)}")
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
    return parser


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


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if args.config:
        values.update(load_config_file(args.config))
        values.pop("env_id", None)
        values.pop("preset", None)
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
    return values


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
    from reinforce_jax.config import resolve_env_id
    from reinforce_jax.envs import env_info
    from reinforce_jax.runfiles import RunDir
    from reinforce_jax.session import run_training

    if args.resume:
        cfg = RunDir.open(args.resume).config()
        enable_compilation_cache()
        try:
            run_training(cfg, env_info(cfg.env_id), args.resume, quiet=args.quiet, resume=True)
        except KeyboardInterrupt:
            return 130
        return 0

    env_id, notice = resolve_env_id(args.env)
    if notice:
        print(notice, file=sys.stderr)
    cfg = make_config(env_id, args.preset, overrides_from_args(args))
    info = env_info(env_id)
    enable_compilation_cache()
    try:
        run_training(cfg, info, args.run_dir, quiet=args.quiet)
    except KeyboardInterrupt:
        return 130  # the session saved a checkpoint and printed how to resume
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"train": cmd_train}[args.command](args)
    except ConfigError as e:
        print(f"reinforce: error: {e}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
