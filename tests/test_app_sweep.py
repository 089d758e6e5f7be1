"""`reinforce sweep`: the files, the table, the statistics, and one clear line for bad input."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from reinforce_jax.app.cli import _parse_value
from reinforce_jax.app.sweep import parse_grid, summarize
from reinforce_jax.config import ConfigError
from reinforce_jax.envs import envpool as pools
from reinforce_jax.stats import iqm
from test_app_cli import assert_usage_error, run_cli

SMALL = ["--set", "num_envs=4", "--set", "rollout_steps=50", "--set", "eval_every=2",
         "--set", "eval_episodes=3", "--set", "hidden_sizes=8", "--total-steps", "1200"]  # fmt: skip


def test_sweep_writes_summary_table_and_figures(tmp_path):
    out = tmp_path / "sw"
    proc = run_cli("sweep", "--env", "CartPole-v1", "--grid", "learning_rate=0.003,0.03",
                   "--grid", "hidden_sizes=[8],[4,4]", "--num-seeds", "3", "--seed", "5",
                   "--run-dir", str(out), *SMALL)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "2 compiled program(s)" in proc.stdout
    assert "final IQM [95% CI]" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == [5, 6, 7]
    assert [e["rank"] for e in summary["configs"]] == [1, 2, 3, 4]
    iqms = [e["final"]["iqm"] for e in summary["configs"]]
    assert iqms == sorted(iqms, reverse=True)  # best first
    evals = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
    assert {(r["config"], r["seed"]) for r in evals} == {
        (c, s) for c in range(4) for s in (5, 6, 7)
    }
    for e in summary["configs"]:  # the summary is the statistics of the logged rows
        finals = [[r for r in evals if r["config"] == e["config"] and r["seed"] == s][-1]
                  ["eval_mean"] for s in (5, 6, 7)]  # fmt: skip
        assert e["final"]["iqm"] == pytest.approx(float(iqm(np.array(finals))))
        assert e["final"]["mean"] == pytest.approx(float(np.mean(finals)))
        lo, hi = e["final"]["iqm_ci95"]
        assert lo <= e["final"]["iqm"] <= hi
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert len(rows) == 4 and {"learning_rate", "hidden_sizes", "final_iqm"} <= set(rows[0])
    assert (out / "curves.png").stat().st_size > 0 and (out / "intervals.png").stat().st_size > 0
    meta = json.loads((out / "sweep.json").read_text())
    assert meta["status"] == "finished" and len(meta["programs"]) == 2


@pytest.mark.skipif(not pools.available(), reason="envpool not installed")
def test_a_sweep_runs_on_envpool(tmp_path):
    out = tmp_path / "sw"
    proc = run_cli("sweep", "--env", "CartPole-v1", "--set", "trainer=envpool", "--grid",
                   "learning_rate=0.003,0.03", "--grid", "gamma=0.99,0.9", "--num-seeds", "2",
                   "--run-dir", str(out), *SMALL)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "2 compiled program(s) on envpool; traced: learning_rate" in proc.stdout
    evals = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
    assert {(r["config"], r["seed"]) for r in evals} == {(c, s) for c in range(4) for s in (0, 1)}
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(e["config"] for e in summary["configs"]) == [0, 1, 2, 3]


@pytest.mark.parametrize(
    "args, needle",
    [
        ([], "--grid"),
        (["--grid", "learning_rate"], "--grid"),
        (["--grid", "learning_rate=fast"], "learning_rate"),
        (["--grid", "seed=1,2"], "seed"),
        (["--grid", "gamma=0.9,2"], "configuration 1"),
        (["--set", "trainer=host", "--grid", "learning_rate=0.01"], "compiled or the envpool"),
        (["--grid", "learning_rate=0.1", "--grid", "learning_rate=0.2"], "twice"),
    ],
)
def test_bad_sweeps_are_one_line_and_exit_2_before_any_file(tmp_path, args, needle):
    out = tmp_path / "sw"
    proc = run_cli("sweep", "--run-dir", str(out), *args)
    assert_usage_error(proc, needle)
    assert not out.exists()


def test_a_sweep_never_overwrites(tmp_path):
    out = tmp_path / "sw"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    proc = run_cli("sweep", "--run-dir", str(out), "--grid", "learning_rate=0.01")
    assert_usage_error(proc, "not empty")
    assert (out / "keep.txt").read_text() == "mine" and len(list(out.iterdir())) == 1


def test_grid_values_split_outside_brackets():
    grid = parse_grid(["hidden_sizes=[32,32],[64]", "learning_rate=1e-3, 0.01"], _parse_value)
    assert grid == {"hidden_sizes": [(32, 32), (64,)], "learning_rate": [0.001, 0.01]}
    with pytest.raises(ConfigError):
        parse_grid(["hidden_sizes="], _parse_value)


def test_summary_statistics_by_hand():
    # Config 0 solves on 2 of 3 seeds (at 200 and 400 steps), config 1 never; final = last row.
    rows = []
    for c, seed, steps, mean, solved in [
        (0, 1, 100, 10.0, False), (0, 1, 200, 500.0, True), (0, 1, 300, 480.0, False),
        (0, 2, 100, 20.0, False), (0, 2, 200, 30.0, False), (0, 2, 400, 500.0, True),
        (0, 3, 100, 5.0, False), (0, 3, 200, 40.0, False), (0, 3, 300, 60.0, False),
        (1, 1, 100, 1.0, False), (1, 2, 100, 2.0, False), (1, 3, 100, 3.0, False),
    ]:  # fmt: skip
        rows.append(dict(config=c, seed=seed, env_steps=steps, eval_mean=mean, solved=solved,
                         wall_time=steps / 100))  # fmt: skip
    s = summarize([{"lr": 0.1}, {"lr": 0.2}], [1, 2, 3], rows, 500.0)
    first, second = s["configs"]
    assert (first["config"], second["config"]) == (0, 1)
    assert first["final"]["mean"] == pytest.approx((480 + 500 + 60) / 3)
    assert first["best"]["iqm"] == pytest.approx(float(iqm(np.array([500.0, 500.0, 60.0]))))
    assert first["solved_fraction"] == pytest.approx(2 / 3)
    assert first["median_steps_to_solve"] == 300 and first["median_seconds_to_solve"] == 3.0
    assert second["solved_fraction"] == 0 and second["median_steps_to_solve"] is None


def test_a_stopped_sweep_summarises_what_it_evaluated(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "sw"
    proc = subprocess.Popen(
        [sys.executable, "-m", "reinforce_jax", "sweep", "--run-dir", str(out), "--grid",
         "learning_rate=0.01,0.02", "--num-seeds", "2", *SMALL[:-2], "--total-steps", "10000000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.time() + 300
    while not (out / "eval.jsonl").exists() and time.time() < deadline:
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted" and len(summary["configs"]) == 2
    assert json.loads((out / "sweep.json").read_text())["status"] == "interrupted"


def test_python_api_sweep_returns_the_summary(tmp_path):
    import reinforce_jax as rj

    with pytest.raises(ConfigError, match="learning_rate"):
        rj.sweep(grid={"learning_rate": [0.01, -1.0]}, run_dir=tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    summary = rj.sweep(grid={"entropy_coef": [0.0, 0.1]}, num_seeds=2, seed=3, quiet=True,
                       run_dir=tmp_path / "sw", num_envs=4, rollout_steps=50, eval_every=2,
                       eval_episodes=3, hidden_sizes=[8], total_steps=800)  # fmt: skip
    assert summary["seeds"] == [3, 4]
    assert sorted(e["settings"]["entropy_coef"] for e in summary["configs"]) == [0.0, 0.1]
    assert json.loads((tmp_path / "sw" / "summary.json").read_text())["configs"] == json.loads(
        json.dumps(summary["configs"])
    )
