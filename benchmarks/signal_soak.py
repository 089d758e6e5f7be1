"""Random-signal soak: SIGKILL, SIGTERM or SIGINT at a random moment, then resume; count outcomes.

Each trial starts `reinforce train` (compiled CartPole, small budget), sends one random signal at a
random moment (during compilation too), resumes until the run finishes (resuming again if needed),
and compares the final parameters and train.jsonl with an uninterrupted reference run. Half the
trials run with an empty compilation cache ("cold"), half with a warm one. Prints the counts.

    python benchmarks/signal_soak.py --trials 20
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ARGS = ["--total-steps", "100000", "--set", "num_envs=4", "--set", "rollout_steps=100",
        "--set", "eval_every=2", "--set", "eval_episodes=8", "--set", "checkpoint_every=1",
        "--quiet"]  # fmt: skip


def reinforce(*args: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "reinforce_jax", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip


def rows(run: Path) -> list[dict]:
    out = []
    for line in (run / "train.jsonl").read_text().splitlines():
        r = json.loads(line)
        out.append({k: v for k, v in r.items() if k not in ("wall_time", "sps")})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--max-delay", type=float, default=8.0, help="latest signal, seconds")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    warm_cache = work / "cache"
    base = dict(os.environ)
    ref = work / "reference"
    proc = reinforce("train", "--run-dir", str(ref), *ARGS,
                     env={**base, "REINFORCE_JAX_CACHE": str(warm_cache)})  # fmt: skip
    proc.wait()
    reference = (rows(ref), (ref / "params.msgpack").read_bytes())
    counts: Counter = Counter()
    for trial in range(args.trials):
        cold = trial % 2 == 0
        env = {**base, "REINFORCE_JAX_CACHE": "off" if cold else str(warm_cache)}
        sig = rng.choice([signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
        delay = rng.uniform(0.0, args.max_delay)
        run = work / f"t{trial}"
        proc = reinforce("train", "--run-dir", str(run), *ARGS, env=env)
        time.sleep(delay)
        proc.send_signal(sig)
        _, err = proc.communicate()
        code = proc.returncode
        outcome = ("finished before the signal" if code == 0 else
                   "segfault" if code == -signal.SIGSEGV or code == 139 else
                   "traceback" if "Traceback" in err else f"exit {code}")  # fmt: skip
        for _ in range(5):  # resume until finished
            status = json.loads((run / "status.json").read_text())["status"] if (
                run / "status.json").exists() else None  # fmt: skip
            if status == "finished" or status is None:
                break
            r = reinforce("train", "--resume", str(run), "--quiet", env=env)
            _, rerr = r.communicate()
            if r.returncode != 0:
                outcome += f"; resume exit {r.returncode}: {rerr.strip()[-120:]}"
                break
        if not (run / "status.json").exists():  # killed before anything was written
            identical = "no run directory yet"
        else:
            same = (rows(run), (run / "params.msgpack").read_bytes()) == reference
            identical = "identical to uninterrupted" if same else "DIFFERENT"
        key = (signal.Signals(sig).name, "cold" if cold else "warm", outcome, identical)
        counts[key] += 1
        print(f"trial {trial:2d}: {key[0]:7s} at {delay:4.1f}s ({key[1]} cache): {outcome}; "
              f"{identical}", flush=True)  # fmt: skip
    print("\ncounts:")
    for key, n in sorted(counts.items()):
        print(f"  {n:3d}  {' / '.join(key)}")


if __name__ == "__main__":
    main()
