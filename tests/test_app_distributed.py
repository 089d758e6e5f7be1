"""Several processes (jax.distributed): two processes on 127.0.0.1 train one single-process run's
seeds; process 0 alone writes; bad flags are one line and exit 2 before anything starts."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from subprocess import PIPE

import jax
import numpy as np
import pytest

import reinforce_jax
from reinforce_jax.app.cli import main
from reinforce_jax.app.distributed import Processes, processes_from_args
from reinforce_jax.app.rundir import RunDir, load_params_file

SMALL = ["--env", "CartPole-v1", "--num-seeds", "4", "--set", "num_envs=4",
         "--set", "rollout_steps=100", "--set", "eval_every=2", "--set", "eval_episodes=8"]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch_pair(args: list[str], command: str = "train") -> list[subprocess.CompletedProcess]:
    """``reinforce COMMAND ARGS`` as processes 0 and 1 of two, on this machine's CPU."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device each
    src = str(Path(reinforce_jax.__file__).parents[1])  # the package under test
    env.update(JAX_PLATFORMS="cpu", REINFORCE_JAX_CACHE="off",
               PYTHONPATH=os.pathsep.join([src, env.get("PYTHONPATH", "")]))  # fmt: skip
    flags = ["--coordinator", f"127.0.0.1:{_free_port()}", "--num-processes", "2"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "reinforce_jax", command, *args, *flags, "--process-id", str(i)],
            env=env,
            stdout=PIPE,
            stderr=PIPE,
            text=True,
        )
        for i in (0, 1)
    ]
    done = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return done


def _rows(run: Path, name: str) -> list[dict]:
    # wall_time and sps are clock readings; every other field is the training itself.
    return [{k: v for k, v in r.items() if k not in ("wall_time", "sps")}
            for r in RunDir.open(run).read_jsonl(name)]  # fmt: skip


def _same_run(two: Path, one: Path) -> None:
    """Every seed's rows and parameters of ``two`` (two processes) equal ``one``'s.

    Each process runs the vmapped program on 2 seeds instead of 4; on XLA's CPU backend a batch
    of 2 and of 4 gives bit-identical per-seed results (measured: rows and parameters), so the
    comparison is exact. (A batch of 1 is not: XLA lowers it differently and losses differ in
    the 7th digit, though evaluations still agree.)
    """
    evals = _rows(two, "eval.jsonl")
    assert sorted({r["seed"] for r in evals}) == [0, 1, 2, 3]
    assert evals == _rows(one, "eval.jsonl")
    assert _rows(two, "train.jsonl") == _rows(one, "train.jsonl")
    a = jax.tree.leaves(load_params_file(two / "params_all_seeds.msgpack"))
    b = jax.tree.leaves(load_params_file(one / "params_all_seeds.msgpack"))
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_two_processes_train_the_seeds_of_one_and_resume_it(tmp_path, capsys):
    two, one = tmp_path / "two", tmp_path / "one"
    p0, p1 = _launch_pair([*SMALL, "--total-steps", "1600", "--run-dir", str(two)])
    assert p0.returncode == 0 and p1.returncode == 0, p0.stderr + p1.stderr
    assert main(["train", *SMALL, "--total-steps", "1600", "--run-dir", str(one), "--quiet"]) == 0
    _same_run(two, one)
    assert "2 processes" in p0.stdout and "Not solved" in p0.stdout
    # Process 1 says which seeds it trains, in one line, and writes nothing of its own.
    # (Gloo, JAX's CPU collectives, prints its own "[Gloo] Rank 1 is connected ..." line.)
    lines = [x for x in p1.stdout.strip().splitlines() if not x.startswith("[Gloo]")]
    assert lines == [f"process 1 of 2: training seeds 2..3; process 0 records every seed in {two}"]
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    assert RunDir.open(two).read_json("status.json")["status"] == "finished"

    # Process 0 refuses the existing run directory; process 1 hears of it instead of waiting.
    before = sorted((p.name, p.stat().st_mtime_ns) for p in two.iterdir())
    p0, p1 = _launch_pair([*SMALL, "--total-steps", "1600", "--run-dir", str(two)])
    assert (p0.returncode, p1.returncode) == (2, 2), p0.stderr + p1.stderr
    assert "already exists" in p0.stderr and "another process could not start" in p1.stderr
    assert sorted((p.name, p.stat().st_mtime_ns) for p in two.iterdir()) == before

    # Resuming: process 0's checkpoint holds every seed; each process restores its own share.
    p0, p1 = _launch_pair(["--resume", str(two), "--total-steps", "2400"])
    assert p0.returncode == 0 and p1.returncode == 0, p0.stderr + p1.stderr
    assert main(["train", "--resume", str(one), "--total-steps", "2400", "--quiet"]) == 0
    _same_run(two, one)
    assert max(r["env_steps"] for r in _rows(two, "eval.jsonl")) == 2400


def test_a_process_other_than_0_writes_nothing(tmp_path, capsys, monkeypatch):
    from reinforce_jax.app import session
    from reinforce_jax.config import make_config
    from reinforce_jax.envs import env_spec

    monkeypatch.setattr(session, "is_lead", lambda: False)
    cfg = make_config("CartPole-v1", overrides={"num_envs": 4, "rollout_steps": 50,
                                                "eval_every": 1, "total_steps": 200})  # fmt: skip
    run = session.run_training(cfg, env_spec("CartPole-v1"), tmp_path / "r")
    assert run.path == tmp_path / "r" and not run.path.exists()
    assert capsys.readouterr().out.strip().splitlines() == [
        f"process 0 of 1: training seeds 0..0; process 0 records every seed in {tmp_path / 'r'}"
    ]


@pytest.mark.parametrize(
    "args, needle",
    [
        (
            ["--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "2"],
            "--process-id must be in 0..1",
        ),  # fmt: skip
        (["--num-processes", "2", "--process-id", "0"], "missing --coordinator"),
        (
            ["--coordinator", "localhost", "--num-processes", "2", "--process-id", "0"],
            "HOST:PORT",
        ),  # fmt: skip
        (
            [
                "--coordinator",
                "127.0.0.1:1",
                "--num-processes",
                "2",
                "--process-id",
                "1",
                "--num-seeds",
                "3",
            ],
            "3 seeds cannot be split evenly over 2 processes",
        ),  # fmt: skip
        (
            [
                "--coordinator",
                "127.0.0.1:1",
                "--num-processes",
                "2",
                "--process-id",
                "0",
                "--num-seeds",
                "2",
                "--trainer",
                "host",
            ],
            "need the compiled trainer",
        ),  # fmt: skip
        (
            ["--coordinator", "127.0.0.1:1", "--num-processes", "0", "--process-id", "0"],
            "at least 1",
        ),  # fmt: skip
    ],
)
def test_bad_combinations_are_one_line_and_exit_2_before_starting(tmp_path, capsys, args, needle):
    # Refused before joining the others (port 1 has no coordinator): nothing waits, nothing written.
    assert main(["train", "--run-dir", str(tmp_path / "r"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "r").exists()


def _args(**given: object) -> argparse.Namespace:
    return argparse.Namespace(**{"coordinator": None, "num_processes": None, "process_id": None,
                                 **given})  # fmt: skip


def test_processes_come_from_the_flags_or_from_srun():
    flags = _args(coordinator="node1:1234", num_processes=4, process_id=3)
    assert processes_from_args(flags, {}) == Processes("node1:1234", 4, 3)
    assert processes_from_args(_args(num_processes=1), {}) is None  # one process: nothing to join
    srun = {"SLURM_JOB_ID": "7", "SLURM_STEP_NUM_TASKS": "8", "SLURM_PROCID": "5"}
    assert processes_from_args(_args(), srun) == Processes(None, 8, 5)  # JAX finds the coordinator
    # A batch script is no srun step: a lone process in an allocation is not one of several.
    assert processes_from_args(_args(), {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "8"}) is None
    assert processes_from_args(_args(), {**srun, "SLURM_STEP_NUM_TASKS": "1"}) is None
    assert processes_from_args(flags, srun) == Processes("node1:1234", 4, 3)  # flags win


def test_two_processes_sweep_as_one(tmp_path):
    # 2 configurations x 2 seeds: each process trains 2 of the 4 runs (a batch of 2, as above).
    args = ["--env", "CartPole-v1", "--grid", "learning_rate=0.01,0.03", "--num-seeds", "2",
            "--set", "num_envs=4", "--set", "rollout_steps=100", "--set", "eval_every=2",
            "--set", "eval_episodes=8", "--total-steps", "1600", "--quiet"]  # fmt: skip
    two, one = tmp_path / "two", tmp_path / "one"
    p0, p1 = _launch_pair([*args, "--run-dir", str(two)], command="sweep")
    assert (p0.returncode, p1.returncode) == (0, 0), p0.stderr + p1.stderr
    assert "process 0 writes" in p1.stdout and "final IQM" in p0.stdout
    assert main(["sweep", *args, "--run-dir", str(one)]) == 0
    strip = lambda d: [{k: v for k, v in json.loads(x).items() if k != "wall_time"}  # noqa: E731
                       for x in (d / "eval.jsonl").read_text().splitlines()]  # fmt: skip
    assert strip(two) == strip(one)
    assert sorted({(r["config"], r["seed"]) for r in strip(two)}) == [
        (0, 0),
        (0, 1),
        (1, 0),
        (1, 1),
    ]


def test_a_sweep_that_processes_cannot_share_is_refused_before_joining(tmp_path, capsys):
    code = main(["sweep", "--grid", "learning_rate=0.01,0.03,0.1", "--num-seeds", "1",
                 "--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "0",
                 "--run-dir", str(tmp_path / "sw")])  # fmt: skip
    assert code == 2 and "cannot be split evenly" in capsys.readouterr().err
    assert not (tmp_path / "sw").exists()
