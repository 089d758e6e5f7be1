"""``value_steps`` on LunarLander-v3 (envpool): per-seed tables of multi-seed runs (not a test).

Reads run directories made by (one after another, pinned to one core)::

    reinforce train --env LunarLander-v3 --trainer envpool --seed 0 --num-seeds 10 \\
      --stop-when-solved --set num_envs=32 --set rollout_steps=64 --set value_scale=100.0 \\
      --set learning_rate=0.002 --set lr_schedule=linear --set lr_decay_steps=2000000 \\
      --set obs_norm=true --set truncation_bootstrap=false --total-steps 1500000 --quiet \\
      [--set value_steps=K] --run-dir RUN

and, per solved seed S, ``reinforce evaluate RUN --run-seed S --episodes 100 --seed 1000 --json``
saved as ``RUN-eval-S.json`` beside ``RUN``. Prints, per seed: solved, environment steps at the
first solving evaluation, that in-training evaluation mean, the re-evaluation on 100 new
gymnasium episodes, the last evaluation, and the value loss of the batches (the baseline's squared
error on experience it has not yet learned from, before each update) averaged over each third of
the budget (updates that stepped: a seed frozen at its solve no longer counts)::

    python benchmarks/value_steps.py A=/tmp/vs/A B=/tmp/vs/B [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def gym_mean(run: Path, seed: int) -> float | None:
    path = run.parent / f"{run.name}-eval-{seed}.json"
    if not path.is_file() or not path.read_text().strip():
        return None
    result = json.loads(path.read_text())
    if "per_seed" in result:
        result = result["per_seed"][0]
    return float(result["mean"])


def summarize(run: Path) -> dict[str, Any]:
    config = json.loads((run / "config.json").read_text())
    cfg = config.get("config", config)
    status = json.loads((run / "status.json").read_text())
    evals, train = read_jsonl(run / "eval.jsonl"), read_jsonl(run / "train.jsonl")
    budget = cfg["total_steps"]
    seeds = sorted({r["seed"] for r in train})
    rows = []
    for s in seeds:
        mine = [r for r in evals if r["seed"] == s]
        first = next((r for r in mine if r["solved"]), None)
        losses: list[float | None] = []
        for lo, hi in ((0, budget / 3), (budget / 3, 2 * budget / 3), (2 * budget / 3, budget)):
            v = [r["value_loss"] for r in train if r["seed"] == s and lo < r["env_steps"] <= hi
                 and r.get("step_scale", 1) > 0 and math.isfinite(r.get("value_loss", math.nan))]  # fmt: skip
            losses.append(sum(v) / len(v) if v else None)
        last = [r for r in train if r["seed"] == s][-1]
        rows.append({
            "seed": s,
            "solved": first is not None,
            "steps_at_solve": first["env_steps"] if first else None,
            "eval_at_solve": first["eval_mean"] if first else None,
            "gym_100": gym_mean(run, s) if first else None,
            "last_eval": mine[-1]["eval_mean"] if mine else None,
            "last_env_steps": last["env_steps"],
            "value_loss_thirds": losses,
        })  # fmt: skip
    return {"run": str(run), "value_steps": cfg.get("value_steps", 0), "rows": rows,
            "wall_time": status.get("wall_time"), "solved": sum(r["solved"] for r in rows)}  # fmt: skip


def fmt(x: Any, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def table(label: str, summary: dict[str, Any]) -> str:
    lines = [f"{label}: value_steps={summary['value_steps']}, {summary['solved']}/"
             f"{len(summary['rows'])} solved, training wall {fmt(summary['wall_time'])} s "
             "(in-process)", "",
             "| seed | solved | env steps at solve | in-training eval | 100 new gymnasium "
             "episodes | last eval (steps) | value loss, thirds of the budget |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in summary["rows"]:
        loss = " / ".join(fmt(v, ".0f") for v in r["value_loss_thirds"])
        lines.append(f"| {r['seed']} | {'yes' if r['solved'] else 'no'} | "
                     f"{fmt(r['steps_at_solve'], ',')} | {fmt(r['eval_at_solve'])} | "
                     f"{fmt(r['gym_100'])} | {fmt(r['last_eval'])} ({r['last_env_steps']:,}) | "
                     f"{loss} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="LABEL=RUN_DIR")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    out = {}
    for item in args.runs:
        label, _, path = item.partition("=")
        out[label] = summarize(Path(path))
        print(table(label, out[label]), end="\n\n")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
