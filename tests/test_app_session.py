"""Checkpoints: exact resume on the compiled path, Ctrl-C, SIGKILL, and unusable run directories."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from reinforce_jax.app import session
from reinforce_jax.app.cli import main
from reinforce_jax.app.rundir import RunDir
from reinforce_jax.config import make_config
from reinforce_jax.envs import env_spec
from reinforce_jax.trainers.events import Checkpoint

OVERRIDES = dict(num_envs=4, rollout_steps=100, eval_every=2, eval_episodes=8, total_steps=8000,
                 checkpoint_every=1, learning_rate=0.01)  # fmt: skip


def _strip(rows):
    return [{k: v for k, v in r.items() if k not in ("wall_time", "sps")} for r in rows]


def _train(path, **extra):
    cfg = make_config("CartPole-v1", overrides={**OVERRIDES, **extra})
    return session.run_training(cfg, env_spec("CartPole-v1"), path, quiet=True)


def interrupt_at(monkeypatch, when):
    """Make training raise KeyboardInterrupt (Ctrl-C) right after the checkpoint ``when`` accepts."""
    real = session.build_trainer

    def building(*args, **kwargs):
        trainer = real(*args, **kwargs)
        run = trainer.run

        def interrupting(resume=None):
            for event in run(resume):
                yield event
                if isinstance(event, Checkpoint) and when(event):
                    raise KeyboardInterrupt

        trainer.run = interrupting
        return trainer

    monkeypatch.setattr(session, "build_trainer", building)
    return lambda: monkeypatch.setattr(session, "build_trainer", real)


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, monkeypatch):
    whole = _train(tmp_path / "whole")

    restore = interrupt_at(monkeypatch, lambda ckpt: ckpt.evaluations == 3)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "cut")
    cut = RunDir.open(tmp_path / "cut")
    assert cut.read_json("status.json")["status"] == "interrupted"
    assert cut.load_checkpoint()["evaluations"] == 3
    # An interrupted run is usable: the latest evaluated parameters and the curve are there.
    assert (cut.path / "params.msgpack").is_file() and (cut.path / "curve.png").is_file()
    assert main(["evaluate", str(cut.path), "--episodes", "2"]) == 0
    restore()

    assert main(["train", "--resume", str(tmp_path / "cut"), "--quiet"]) == 0
    assert cut.read_json("status.json")["status"] == "finished"
    assert (cut.path / "params.msgpack").read_bytes() == (
        whole.path / "params.msgpack"
    ).read_bytes()
    for name in ("train.jsonl", "eval.jsonl"):
        assert _strip(cut.read_jsonl(name)) == _strip(whole.read_jsonl(name))


def test_resume_discards_work_after_the_checkpoint(tmp_path):
    run = _train(tmp_path / "r")
    # Pretend the process died after chunk 2's checkpoint but had logged more rows.
    ckpt = run.load_checkpoint()
    assert ckpt["evaluations"] == 10
    (run.path / "status.json").unlink()
    run.append("eval.jsonl", [{"bogus": 1}])
    ckpt_meta = {k: v for k, v in ckpt.items() if k != "state"}
    run.save_checkpoint(ckpt["state"], ckpt_meta)
    run.set_status("running")
    assert main(["train", "--resume", str(run.path), "--quiet"]) == 0
    assert all("bogus" not in r for r in run.read_jsonl("eval.jsonl"))


def test_sigkill_mid_run_resumes_to_the_same_result(tmp_path):
    overrides = {**OVERRIDES, "total_steps": 200_000}
    sets = [a for k, v in overrides.items() for a in ("--set", f"{k}={v}")]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "reinforce_jax", "train", "--run-dir", str(killed), "--quiet",
         *sets],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if (killed / "checkpoint.msgpack").exists() and (killed / "eval.jsonl").exists():
            if len((killed / "eval.jsonl").read_text().splitlines()) >= 2:
                break
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    run = RunDir.open(killed)
    assert run.read_json("status.json")["status"] == "running"  # died without a word
    assert run.load_checkpoint()["evaluations"] >= 1
    resumed = subprocess.run(
        [sys.executable, "-m", "reinforce_jax", "train", "--resume", str(killed), "--quiet"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    whole = _train(tmp_path / "whole", total_steps=200_000)
    assert (killed / "params.msgpack").read_bytes() == (whole.path / "params.msgpack").read_bytes()
    assert _strip(run.read_jsonl("train.jsonl")) == _strip(whole.read_jsonl("train.jsonl"))


@pytest.mark.parametrize("damage", ["missing", "file", "foreign", "corrupt_config",
                                    "corrupt_checkpoint", "finished"])  # fmt: skip
def test_unusable_run_directories_are_one_line_exit_2(tmp_path, damage, capsys):
    path = tmp_path / "run"
    if damage == "missing":
        pass
    elif damage == "file":
        path.write_text("x")
    elif damage == "foreign":
        path.mkdir()
        (path / "notes.txt").write_text("mine")
    else:
        _train(path, total_steps=800)
        if damage == "corrupt_config":
            (path / "config.json").write_text("{not json")
        elif damage == "corrupt_checkpoint":
            (path / "status.json").write_text('{"status": "interrupted"}')
            (path / "checkpoint.msgpack").write_bytes(b"\x00garbage")
    snapshot = lambda: {p.name: p.read_bytes() for p in path.rglob("*") if p.is_file()}  # noqa: E731
    before = snapshot() if path.is_dir() else None
    assert main(["train", "--resume", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("reinforce: error:")
    if before is not None:  # nothing lost
        assert snapshot() == before


def test_checkpoint_for_another_config_is_refused(tmp_path):
    run = _train(tmp_path / "r", total_steps=800)
    ckpt = run.load_checkpoint()
    state = dict(ckpt["state"])
    state.pop(sorted(state, key=int)[-1])
    run.save_checkpoint(state, {k: v for k, v in ckpt.items() if k != "state"})
    run.set_status("interrupted")
    before = {p.name: p.read_bytes() for p in run.path.rglob("*") if p.is_file()}
    assert main(["train", "--resume", str(run.path), "--quiet"]) == 2
    assert {p.name: p.read_bytes() for p in run.path.rglob("*") if p.is_file()} == before


def test_host_run_resumes_with_its_state_and_obs_statistics(tmp_path, monkeypatch):
    overrides = {"trainer": "host", "num_envs": 2, "rollout_steps": 64, "eval_every": 2,
                 "eval_episodes": 2, "total_steps": 128 * 8, "checkpoint_every": 1,
                 "obs_norm": True}  # fmt: skip
    cfg = make_config("CartPole-v1", overrides=overrides)
    restore = interrupt_at(monkeypatch, lambda ckpt: ckpt.evaluations == 2)
    with pytest.raises(KeyboardInterrupt):
        session.run_training(cfg, env_spec("CartPole-v1"), tmp_path / "h", quiet=True)
    run = RunDir.open(tmp_path / "h")
    ckpt = run.load_checkpoint()
    assert (ckpt["evaluations"], ckpt["trainer"]["update"], ckpt["trainer"]["env_steps"]) == (
        2,
        4,
        512,
    )
    restore()
    assert main(["train", "--resume", str(run.path), "--quiet"]) == 0
    train = run.read_jsonl("train.jsonl")
    assert [r["update"] for r in train] == list(range(1, 9))
    assert train[-1]["env_steps"] == 128 * 8
    # Observation statistics continued from the checkpoint: every training step counted once.
    count = float(run.load_params()["obs_norm"]["count"])
    assert count == pytest.approx(128 * 8, abs=0.01)


def test_notebook_run_resumes_with_memory_and_counters(tmp_path, monkeypatch):
    overrides = {"num_episodes": 60, "eval_every_episodes": 20, "checkpoint_every": 1}
    cfg = make_config("CartPole-v1", "notebook", overrides)
    restore = interrupt_at(monkeypatch, lambda ckpt: ckpt.meta["episode"] == 20)
    with pytest.raises(KeyboardInterrupt):
        session.run_training(cfg, env_spec("CartPole-v1"), tmp_path / "nb", quiet=True)
    run = RunDir.open(tmp_path / "nb")
    ckpt = run.load_checkpoint()
    meta = ckpt["trainer"]
    assert meta["episode"] == 20 and meta["memory_size"] == min(512, meta["env_steps"])
    before = run.read_jsonl("train.jsonl")
    restore()
    assert main(["train", "--resume", str(run.path), "--quiet"]) == 0
    rows = run.read_jsonl("train.jsonl")
    assert [r["episode"] for r in rows] == list(range(60))
    assert rows[:21] == before[:21]
    # The memory came back full, so learning goes on at 2 updates per episode without a pause.
    assert rows[21]["update"] == rows[20]["update"] + 2
    assert rows[-1]["update"] == rows[20]["update"] + 2 * 39
    assert [r["episode"] for r in run.read_jsonl("eval.jsonl")] == [0, 20, 40]


def test_settings_line_names_the_entropy_decay_and_a_missing_truncation_bootstrap():
    spec = env_spec("LunarLander-v3")
    plain = session.describe_settings(
        make_config("LunarLander-v3", overrides={"truncation_bootstrap": True}), spec
    )
    assert "decaying linearly over 1,000,000 steps" not in plain and "no bootstrap" not in plain
    assert "TD(lambda = 0.95) returns" in plain  # LunarLander's default
    mc = make_config("LunarLander-v3", overrides={"return_lambda": 1.0})
    assert "TD(lambda" not in session.describe_settings(mc, spec)
    cfg = make_config("LunarLander-v3", overrides={"entropy_decay_steps": 1_000_000,
                                                   "truncation_bootstrap": False})  # fmt: skip
    line = session.describe_settings(cfg, spec)
    assert "entropy 0.01 decaying linearly over 1,000,000 steps" in line
    assert "no bootstrap at the time limit" in line


def test_background_imports_wait_for_the_trainer_to_finish_tracing(monkeypatch):
    # They hold the GIL; a trainer's tracing does too. So they start once it signals.
    import importlib
    import threading

    imported, real = [], importlib.import_module
    monkeypatch.setattr(
        importlib, "import_module", lambda name: imported.append(name) or real(name)
    )
    after = threading.Event()
    thread = session.preload_in_background(("json",), after=after, wait=30.0)
    time.sleep(0.2)
    assert thread.is_alive() and imported == []
    after.set()
    thread.join(30)
    assert imported == ["json"]
    # Without a signal it starts at once (the host and notebook trainers trace nothing).
    session.preload_in_background(("json",)).join(30)
    assert imported == ["json", "json"]


def test_the_compiled_trainer_signals_its_tracing_done_to_the_preload():
    from reinforce_jax.trainers import build_trainer, export_cache

    trainer = build_trainer(make_config("CartPole-v1"), env_spec("CartPole-v1"))
    assert trainer.tracing_done is export_cache.COMPILING


def test_the_sparse_reward_hint_needs_returns_that_were_all_the_same():
    hint = session.sparse_reward_hint
    # MountainCar-v0 never reaching the goal: -1 a step, every return -200.
    assert "every return was the same (-200)" in hint(200, False, False, (-200.0, -200.0))
    # Pendulum-v1 runs every episode to its limit, but its returns differ: something to learn.
    assert hint(200, False, False, (-1450.2, -890.6)) is None
    assert hint(200, True, False, (-200.0, -200.0)) is None  # an episode ended early
    assert hint(200, False, True, (-200.0, -200.0)) is None  # a seed solved
    assert hint(None, False, False, (-200.0, -200.0)) is None  # no time limit
    assert hint(200, False, False, (float("inf"), float("-inf"))) is None  # no episode ended


def test_the_console_line_says_when_no_training_episode_has_ended_yet():
    row = {"update": 1, "env_steps": 8000, "eval_mean": 0.5, "eval_std": 0.1, "eval_episodes": 5,
           "solved": False, "wall_time": 5.0}  # fmt: skip
    line = session._batched_line([row], float("nan"), 0, "Greedy", 1)
    assert "Training return (sampled): - (no episode ended yet)" in line and "nan" not in line
    line = session._batched_line([row], -12.34, 0, "Greedy", 1)
    assert "Training return (sampled): -12.3\t" in line
