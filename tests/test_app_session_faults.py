"""Faults and hostile files: signals, interrupted resumes, divergence, locks, damaged run
directories, failed writes. Each case ends with one clear line and nothing written is lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from reinforce_jax.app import session
from reinforce_jax.app.cli import main
from reinforce_jax.app.rundir import RunDir, RunError
from reinforce_jax.config import make_config
from reinforce_jax.envs import env_spec
from reinforce_jax.trainers.events import Checkpoint, TrainRows

SMALL = ["--set", "num_envs=4", "--set", "rollout_steps=100", "--set", "eval_every=2",
         "--set", "eval_episodes=8", "--set", "checkpoint_every=1"]  # fmt: skip


def _strip(rows):
    return [{k: v for k, v in r.items() if k not in ("wall_time", "sps")} for r in rows]


def _snapshot(path):
    return {p.name: p.read_bytes() for p in path.rglob("*") if p.is_file()}


def interrupt_between_checkpoints(monkeypatch, after_checkpoints: int, rows_after: int):
    """Ctrl-C after ``rows_after`` train events that follow checkpoint number ``after_checkpoints``:
    rows were logged that the checkpoint does not account for."""
    real = session.build_trainer

    def building(*args, **kwargs):
        trainer = real(*args, **kwargs)
        run = trainer.run

        def interrupting(resume=None):
            seen, extra = 0, 0
            for event in run(resume):
                yield event
                if isinstance(event, Checkpoint):
                    seen += 1
                elif isinstance(event, TrainRows) and seen >= after_checkpoints:
                    extra += 1
                    if extra == rows_after:
                        raise KeyboardInterrupt

        trainer.run = interrupting
        return trainer

    monkeypatch.setattr(session, "build_trainer", building)
    return lambda: monkeypatch.setattr(session, "build_trainer", real)


@pytest.mark.parametrize("preset, overrides, key", [
    ("default", {"trainer": "host", "num_envs": 2, "rollout_steps": 64, "eval_every": 2,
                 "eval_episodes": 2, "total_steps": 128 * 8, "checkpoint_every": 1}, "update"),
    ("notebook", {"num_episodes": 50, "eval_every_episodes": 20, "checkpoint_every": 1},
     "episode"),
])  # fmt: skip
def test_ctrl_c_between_checkpoints_then_resume_gives_one_row_per_unit(
    tmp_path, monkeypatch, preset, overrides, key
):
    cfg = make_config("CartPole-v1", preset, overrides)
    restore = interrupt_between_checkpoints(monkeypatch, after_checkpoints=1, rows_after=3)
    with pytest.raises(KeyboardInterrupt):
        session.run_training(cfg, env_spec("CartPole-v1"), tmp_path / "r", quiet=True)
    restore()
    assert main(["train", "--resume", str(tmp_path / "r"), "--quiet"]) == 0
    rows = RunDir.open(tmp_path / "r").read_jsonl("train.jsonl")
    units = [r[key] for r in rows]
    assert units == sorted(set(units)) and len(units) == len(set(units))  # no duplicates


def _start(run_dir, *extra):
    return subprocess.Popen(
        [sys.executable, "-m", "reinforce_jax", "train", "--run-dir", str(run_dir), "--quiet",
         *SMALL, *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _wait_for_checkpoint(proc, run_dir, evals=1):
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if (run_dir / "checkpoint.msgpack").exists() and (run_dir / "eval.jsonl").exists():
            if len((run_dir / "eval.jsonl").read_text().splitlines()) >= evals:
                return
        time.sleep(0.01)
    raise AssertionError("no checkpoint before the run ended")


def test_sigterm_checkpoints_says_how_to_resume_and_resumes_exactly(tmp_path):
    run_dir = tmp_path / "term"
    proc = _start(run_dir, "--total-steps", "200000")
    _wait_for_checkpoint(proc, run_dir, evals=2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "--resume" in err and "Traceback" not in err
    run = RunDir.open(run_dir)
    status = run.read_json("status.json")
    assert status["status"] == "interrupted" and status["signal"] == "SIGTERM"
    assert (run_dir / "params.msgpack").is_file()  # usable at once
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 0
    whole = tmp_path / "whole"
    assert main(["train", "--run-dir", str(whole), "--quiet", "--total-steps", "200000",
                 *SMALL]) == 0  # fmt: skip
    assert (run_dir / "params.msgpack").read_bytes() == (whole / "params.msgpack").read_bytes()
    assert _strip(run.read_jsonl("train.jsonl")) == _strip(
        RunDir.open(whole).read_jsonl("train.jsonl")
    )


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGINT])
def test_hangup_and_interrupt_stop_with_a_checkpoint(tmp_path, sig):
    run_dir = tmp_path / "r"
    proc = _start(run_dir, "--total-steps", "400000")
    _wait_for_checkpoint(proc, run_dir)
    proc.send_signal(sig)
    proc.send_signal(sig)  # a second one must not lose the checkpoint either
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err
    assert RunDir.open(run_dir).read_json("status.json")["status"] == "interrupted"
    assert RunDir.open(run_dir).load_checkpoint()["evaluations"] >= 1


def test_ctrl_c_during_compilation_stops_cleanly(tmp_path):
    run_dir = tmp_path / "c"
    env = dict(os.environ, REINFORCE_JAX_CACHE="off")
    proc = subprocess.Popen(
        [sys.executable, "-m", "reinforce_jax", "train", "--run-dir", str(run_dir), "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    deadline = time.time() + 120
    while not (run_dir / "status.json").exists() and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)  # the trainer is tracing and compiling now
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err  # not a segmentation fault, not trained to the end
    assert RunDir.open(run_dir).read_json("status.json")["status"] == "interrupted"


def test_divergence_stops_with_one_line_and_keeps_finite_parameters(tmp_path, capsys):
    run_dir = tmp_path / "nan"
    code = main(["train", "--run-dir", str(run_dir), "--total-steps", "40000", "--quiet",
                 *SMALL, "--set", "learning_rate=1e10", "--set", "lr_schedule=constant"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "diverged" in err[0]
    run = RunDir.open(run_dir)
    assert run.read_json("status.json")["status"] == "diverged"
    if (run_dir / "params.msgpack").exists():  # only finite parameters are ever written
        params = run.load_params()
        import jax

        assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(params))
    ckpt = run.load_checkpoint()
    if ckpt is not None:
        assert all(np.all(np.isfinite(np.asarray(x))) for x in ckpt["state"].values()
                   if np.asarray(x).dtype.kind == "f")  # fmt: skip


def test_evaluate_refuses_non_finite_and_foreign_parameters(tmp_path, capsys):
    from flax import serialization

    run_dir = tmp_path / "r"
    assert main(["train", "--run-dir", str(run_dir), "--total-steps", "2000", "--quiet",
                 "--set", "eval_episodes=2"]) == 0  # fmt: skip
    run = RunDir.open(run_dir)
    params = run.load_params()
    params["policy"]["params"]["Dense_0"]["bias"] = np.full_like(
        params["policy"]["params"]["Dense_0"]["bias"], np.nan
    )
    (run_dir / "params.msgpack").write_bytes(serialization.msgpack_serialize(params))
    capsys.readouterr()
    assert main(["evaluate", str(run_dir), "--episodes", "2"]) == 2
    assert "NaN" in capsys.readouterr().err
    lander = tmp_path / "pre.msgpack"
    from reinforce_jax.policies import load_pretrained

    lander.write_bytes(serialization.msgpack_serialize(load_pretrained("LunarLander-v3")[1]))
    (run_dir / "params.msgpack").write_bytes(lander.read_bytes())
    assert main(["evaluate", str(run_dir), "--episodes", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "do not fit" in err[0]


def test_a_run_is_locked_while_it_trains(tmp_path, capsys):
    cfg = make_config("CartPole-v1")
    first = RunDir.create(tmp_path / "r", cfg)
    with pytest.raises(RunError, match="already exists|another process"):
        RunDir.create(tmp_path / "r", cfg)
    first.set_status("interrupted")
    before = _snapshot(tmp_path / "r")
    assert main(["train", "--resume", str(tmp_path / "r")]) == 2
    assert "another process" in capsys.readouterr().err
    assert _snapshot(tmp_path / "r") == before
    first.unlock()


def test_resume_after_a_kill_in_the_last_second_trains_nothing_more(tmp_path):
    run_dir = tmp_path / "s"
    args = ["--total-steps", "400000", "--stop-when-solved", "--set", "eval_episodes=10"]
    assert main(["train", "--run-dir", str(run_dir), "--quiet", *args]) == 0
    run = RunDir.open(run_dir)
    rows, params = run.read_jsonl("train.jsonl"), (run_dir / "params.msgpack").read_bytes()
    run.set_status("running")  # killed after the final checkpoint, before "finished"
    run.unlock()
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 0
    assert run.read_jsonl("train.jsonl") == rows
    assert (run_dir / "params.msgpack").read_bytes() == params


@pytest.mark.parametrize("damage, needle", [
    ("config_total_steps", "total_steps"),
    ("ckpt_evaluations", "evaluations"),
    ("ckpt_eval_rows", "eval_rows"),
    ("short_jsonl", "damaged"),
    ("garbage_jsonl", "corrupt"),
])  # fmt: skip
def test_resume_validates_everything_before_training(tmp_path, capsys, damage, needle):
    run_dir = tmp_path / "r"
    assert main(["train", "--run-dir", str(run_dir), "--total-steps", "8000", "--quiet",
                 *SMALL]) == 0  # fmt: skip
    run = RunDir.open(run_dir)
    ckpt = run.load_checkpoint()
    meta = {k: v for k, v in ckpt.items() if k != "state"}
    if damage == "config_total_steps":
        data = run.read_json("config.json")
        data["config"]["total_steps"] = -1
        run.write_json("config.json", data)
    elif damage == "ckpt_evaluations":
        run.save_checkpoint(ckpt["state"], {**meta, "evaluations": -5})
    elif damage == "ckpt_eval_rows":
        run.save_checkpoint(ckpt["state"], {**meta, "eval_rows": -3})
    elif damage == "short_jsonl":
        lines = (run_dir / "train.jsonl").read_text().splitlines()
        (run_dir / "train.jsonl").write_text("\n".join(lines[:3]) + "\n")
    elif damage == "garbage_jsonl":
        (run_dir / "eval.jsonl").write_text("{bad json\n" + (run_dir / "eval.jsonl").read_text())
    run.set_status("interrupted")
    run.unlock()
    before = _snapshot(run_dir)
    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert _snapshot(run_dir) == before


def test_a_failed_write_is_one_line_and_marks_the_run(tmp_path, capsys, monkeypatch):
    def full(self, name, records):
        raise OSError(28, "No space left on device", str(self.path / name))

    monkeypatch.setattr(RunDir, "append", full)
    run_dir = tmp_path / "full"
    assert main(["train", "--run-dir", str(run_dir), "--total-steps", "2000", "--quiet",
                 "--set", "eval_episodes=2"]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left" in err[0]
    assert json.loads((run_dir / "status.json").read_text())["status"] == "failed"


def test_resume_removes_temp_files_left_by_a_kill_and_runs_lists_corrupt_runs(tmp_path, capsys):
    root = tmp_path / "runs"
    run_dir = root / "r"
    assert main(["train", "--run-dir", str(run_dir), "--total-steps", "8000", "--quiet",
                 *SMALL]) == 0  # fmt: skip
    run = RunDir.open(run_dir)
    ckpt = run.load_checkpoint()
    meta = {k: v for k, v in ckpt.items() if k not in ("state",)}
    run.save_checkpoint(ckpt["state"], {**meta, "evaluations": 2, "train_rows": 4,
                                        "eval_rows": 2, "trainer": ckpt["trainer"]})  # fmt: skip
    (run_dir / ".checkpoint.msgpack.abc123").write_bytes(b"partial")
    run.set_status("interrupted")
    run.unlock()
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 0
    assert not (run_dir / ".checkpoint.msgpack.abc123").exists()
    bad = root / "bad"
    bad.mkdir()
    (bad / "config.json").write_text((run_dir / "config.json").read_text())
    (bad / "train.jsonl").write_text("{not json\n{}\n")
    capsys.readouterr()
    assert main(["runs", str(root)]) == 0
    out = capsys.readouterr().out
    assert "corrupt" in next(ln for ln in out.splitlines() if ln.startswith("bad"))


def test_a_run_directory_with_a_setting_this_version_lacks_is_one_line_and_exit_2(tmp_path, capsys):
    run_dir = tmp_path / "r"
    assert main(["train", "--run-dir", str(run_dir), "--total-steps", "8000", "--quiet",
                 *SMALL]) == 0  # fmt: skip
    data = json.loads((run_dir / "config.json").read_text())
    data["config"]["a_future_setting"] = True
    (run_dir / "config.json").write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["evaluate", str(run_dir), "--episodes", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another version of reinforce-jax" in err[0]
    assert "a_future_setting" in err[0]
