"""The `reinforce` command: training writes a complete run; bad input is one line and exit 2."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from reinforce_jax.app.cli import main
from reinforce_jax.app.rundir import RunDir, load_params_file


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "reinforce_jax", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def assert_usage_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr  # one clear line, no traceback
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0]


def test_help_lists_train():
    proc = run_cli("--help")
    assert proc.returncode == 0
    assert "train" in proc.stdout


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--env", "NoSuchEnv-v9"], "NoSuchEnv-v9"),
        (["--env", "Blackjack-v1"], "supports Box and Discrete (one-hot encoded) observations"),
        (["--env", "Pendulum-v1", "--set", "action_bounds=tanh"], "action_bounds"),
        (["--set", "gamma=1.5"], "gamma"),
        (["--set", "gamma=0"], "gamma"),
        (["--set", "num_episodes=0"], "num_episodes"),
        (["--set", "batch_size=-3"], "batch_size"),
        (["--set", "num_envs=0"], "num_envs"),
        (["--set", "hidden_sizes=20,0"], "hidden_sizes"),
        (["--set", "no_such_key=1"], "--set"),
        (["--set", "learning_rate=fast"], "learning_rate"),
        (["--preset", "nope"], "preset"),
        (["--seed", "abc"], "seed"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, needle):
    run_dir = tmp_path / "run"
    proc = run_cli("train", "--run-dir", str(run_dir), *args)
    assert_usage_error(proc, needle)
    assert not run_dir.exists()  # nothing created for rejected input


def test_run_dir_that_is_a_file_is_refused_and_kept(tmp_path):
    target = tmp_path / "taken"
    target.write_text("precious")
    proc = run_cli("train", "--run-dir", str(target), "--set", "total_steps=1000")
    assert_usage_error(proc, "file")
    assert target.read_text() == "precious"


def test_existing_run_is_never_overwritten(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text("{}")
    proc = run_cli("train", "--run-dir", str(run_dir), "--set", "total_steps=1000")
    assert_usage_error(proc, "not empty")
    assert (run_dir / "config.json").read_text() == "{}"


def test_lunarlander_v2_maps_to_v3_with_a_notice(tmp_path):
    # The notice comes first; an impossible setting then stops the run before training starts.
    proc = run_cli("train", "--env", "LunarLander-v2", "--set", "gamma=2")
    assert proc.returncode == 2
    assert "LunarLander-v3" in proc.stderr.splitlines()[0]


def test_compiled_train_writes_a_complete_run(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = main(
        ["train", "--run-dir", str(run_dir), "--seed", "3", "--total-steps", "20000",
         "--set", "eval_episodes=10"]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert str(run_dir / "curve.png") in out and str(run_dir / "params.msgpack") in out
    run = RunDir.open(run_dir)
    cfg = run.config()
    assert cfg.seed == 3 and cfg.trainer == "compiled" and cfg.env_id == "CartPole-v1"
    train = run.read_jsonl("train.jsonl")
    evals = run.read_jsonl("eval.jsonl")
    assert [r["update"] for r in train] == list(range(1, len(train) + 1))
    assert train[-1]["env_steps"] >= 20000
    assert all(r["eval_episodes"] == 10 for r in evals)
    assert (run_dir / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    params = load_params_file(run_dir / "params.msgpack")
    kernel = params["policy"]["params"]["Dense_0"]["kernel"]
    assert np.asarray(kernel).shape == (4, 20)
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "finished"


def test_notebook_preset_procedure(tmp_path, capsys):
    run_dir = tmp_path / "nb"
    code = main(
        ["train", "--preset", "notebook", "--run-dir", str(run_dir),
         "--set", "num_episodes=40", "--set", "eval_every_episodes=20"]
    )  # fmt: skip
    assert code == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("Episode:")]
    assert len(lines) == 2  # episodes 0 and 20, the notebook's log line
    assert "Episode Return:" in lines[0] and "Average Episode Return:" in lines[0]
    assert "Evaluator Episode Return:" in lines[0]
    run = RunDir.open(run_dir)
    cfg = run.config()
    assert (cfg.learning_rate, cfg.buffer_size, cfg.batch_size) == (1e-3, 512, 256)
    assert cfg.learn_steps_per_episode == 2 and cfg.eval_episodes == 8
    episodes = run.read_jsonl("train.jsonl")
    assert [r["episode"] for r in episodes] == list(range(40))
    # Learning starts once the memory holds a batch, then 2 updates per episode.
    steps = np.cumsum([r["episode_length"] for r in episodes])
    first = int(np.argmax(steps >= 256))
    assert episodes[first - 1]["update"] == 0 if first > 0 else True
    assert episodes[first]["update"] == 2
    assert episodes[-1]["update"] == 2 * (40 - first)


def test_same_seed_same_numbers(tmp_path):
    rows = []
    for name in ("a", "b"):
        assert main(["train", "--run-dir", str(tmp_path / name), "--total-steps", "20000",
                     "--set", "eval_episodes=10", "--quiet"]) == 0  # fmt: skip
        rows.append(RunDir.open(tmp_path / name).read_jsonl("train.jsonl"))
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ("wall_time", "sps")} for r in rs]
    assert strip(rows[0]) == strip(rows[1])


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--trainer", "notebook", "--num-seeds", "2"], "one seed"),
        (["--trainer", "host", "--num-seeds", "2"], "one seed"),
        (["--env", "LunarLander-v3", "--trainer", "compiled"], "no JAX implementation"),
        pytest.param(
            ["--track"],
            "wandb",
            marks=pytest.mark.skipif(
                importlib.util.find_spec("wandb") is not None, reason="wandb is installed"
            ),
        ),
    ],
)
def test_settings_a_trainer_cannot_run_are_refused_before_any_file(tmp_path, args, needle):
    run_dir = tmp_path / "run"
    proc = run_cli("train", "--run-dir", str(run_dir), *args)
    assert_usage_error(proc, needle)
    assert not run_dir.exists()


# --- settings are used or refused, never silently dropped (issues 9 and 10) ----------------------
def _resolved(argv):
    from reinforce_jax.app.cli import build_parser, overrides_from_args

    return overrides_from_args(build_parser().parse_args(["train", *argv]))


def test_config_file_env_id_and_preset_are_used_and_flags_override_them(tmp_path):
    path = tmp_path / "my.toml"
    path.write_text('env_id = "Acrobot-v1"\npreset = "notebook"\nseed = 4\n')
    env_id, preset, values = _resolved(["--config", str(path)])
    assert (env_id, preset, values["seed"]) == ("Acrobot-v1", "notebook", 4)
    env_id, preset, values = _resolved(["--config", str(path), "--env", "CartPole-v1",
                                        "--preset", "default", "--seed", "1"])  # fmt: skip
    assert (env_id, preset, values["seed"]) == ("CartPole-v1", "default", 1)
    assert _resolved(["--set", "env_id=MountainCar-v0", "--set", "preset=notebook"])[:2] == (
        "MountainCar-v0",
        "notebook",
    )


def test_environment_ids_resolve_as_gymnasium_does():
    from reinforce_jax.envs.registry import resolve_env_id

    assert resolve_env_id("CartPole-v0") == ("CartPole-v0", None)  # registered, 200-step limit
    new, notice = resolve_env_id("CartPole")
    assert new == "CartPole-v1" and "latest" in notice
    assert resolve_env_id("LunarLander-v2")[0] == "LunarLander-v3"


def test_jax_native_specs_equal_gymnasiums_without_importing_it():
    import gymnasium as gym

    from reinforce_jax.envs.registry import JAX_ENVS, env_spec, gym_env_spec, resolve_env_id

    for env_id in JAX_ENVS:  # the ids and facts the start-up fast path knows without gymnasium
        assert env_id in gym.envs.registry
        assert resolve_env_id(env_id) == (env_id, None)
        assert env_spec(env_id) == gym_env_spec(env_id)
    code = ("import sys; from reinforce_jax.envs.registry import env_spec, resolve_env_id; "
            "resolve_env_id('CartPole-v1'); env_spec('CartPole-v1'); "
            "print('gymnasium' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--env", "this:CartPole-v1"], "module"),
        (["--set", "learning_rate=inf"], "finite"),
        (["--set", "entropy_coef=nan"], "finite"),
        (["--set", "return_lambda=1.5"], "return_lambda must be in [0, 1]"),
        (["--set", "return_lambda=0.9", "--set", "baseline=mean"], "needs baseline = value"),
        (["--set", "return_lambda=0.9"], "envpool and host trainers"),  # CartPole: compiled
        (["--resume", ""], "empty"),
    ],
)
def test_more_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, needle):
    from reinforce_jax.app.cli import main

    run_dir = tmp_path / "run"
    code = main(["train", "--run-dir", str(run_dir), *args] if "--resume" not in args
                else ["train", *args])  # fmt: skip
    err = capsys.readouterr()
    assert code == 2 and len(err.err.strip().splitlines()) == 1 and needle in err.err
    assert "Zen of Python" not in err.out + err.err and not run_dir.exists()


@pytest.mark.parametrize(
    "text, needle",
    [("hidden_sizes = [1.5, 2.7]\n", "hidden_sizes"), ('stop_when_solved = "yes"\n', "bool"),
     ('learning_rate = "0.01"\n', "float"), ("seed = 1.5\n", "int")],
)  # fmt: skip
def test_config_files_are_not_coerced(tmp_path, capsys, text, needle):
    from reinforce_jax.app.cli import main

    path = tmp_path / "c.toml"
    path.write_text(text)
    assert main(["train", "--config", str(path), "--run-dir", str(tmp_path / "r")]) == 2
    assert needle in capsys.readouterr().err and not (tmp_path / "r").exists()


def test_a_run_directory_never_makes_the_cli_import_a_module(tmp_path, capsys):
    from reinforce_jax.app.cli import main

    assert main(["train", "--run-dir", str(tmp_path / "r"), "--total-steps", "2000",
                 "--set", "eval_episodes=2", "--quiet"]) == 0  # fmt: skip
    config = tmp_path / "r" / "config.json"
    data = json.loads(config.read_text())
    data["config"]["env_id"] = "this:CartPole-v1"
    config.write_text(json.dumps(data))
    (tmp_path / "r" / "status.json").write_text('{"status": "interrupted"}')
    capsys.readouterr()
    for argv in (["train", "--resume", str(tmp_path / "r")], ["evaluate", str(tmp_path / "r")]):
        assert main(argv) == 2
        out = capsys.readouterr()
        assert "Zen of Python" not in out.out + out.err and "module" in out.err


def test_resume_refuses_other_flags_and_version_and_evaluate_hints(tmp_path, capsys):
    from reinforce_jax.app.cli import main

    assert (
        main(["train", "--resume", str(tmp_path / "r"), "--seed", "3", "--set", "gamma=0.9"]) == 2
    )
    err = capsys.readouterr().err
    assert "--seed" in err and "--set" in err and "cannot change" in err
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and "reinforce-jax" in capsys.readouterr().out
    assert main(["evaluate"]) == 2
    assert "run directory" in capsys.readouterr().err


def test_resume_with_total_steps_extends_a_finished_run_exactly(tmp_path, capsys):
    from reinforce_jax.app.cli import main

    small = ["--set", "eval_episodes=10", "--quiet"]
    assert main(["train", "--run-dir", str(tmp_path / "a"), "--total-steps", "20000", *small]) == 0
    assert main(["train", "--resume", str(tmp_path / "a"), "--total-steps", "10000"]) == 2
    assert "more than" in capsys.readouterr().err
    assert (
        main(["train", "--resume", str(tmp_path / "a"), "--total-steps", "40000", "--quiet"]) == 0
    )
    assert main(["train", "--run-dir", str(tmp_path / "b"), "--total-steps", "40000", *small]) == 0
    a, b = RunDir.open(tmp_path / "a"), RunDir.open(tmp_path / "b")
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ("wall_time", "sps")} for r in rs]
    assert strip(a.read_jsonl("train.jsonl")) == strip(b.read_jsonl("train.jsonl"))
    assert a.config().total_steps == 40000
    assert (a.path / "params.msgpack").read_bytes() == (b.path / "params.msgpack").read_bytes()


def test_a_smaller_budget_runs_the_same_dynamics_and_ends_with_a_verdict(tmp_path, capsys):
    from reinforce_jax.app.cli import main

    for name, steps in (("short", "20000"), ("long", "40000")):
        assert main(["train", "--run-dir", str(tmp_path / name), "--total-steps", steps,
                     "--set", "eval_episodes=10"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert out.count("Not solved: best evaluation") + out.count("Solved:") == 2
    short = RunDir.open(tmp_path / "short").read_jsonl("train.jsonl")
    long = RunDir.open(tmp_path / "long").read_jsonl("train.jsonl")
    assert [r["learning_rate"] for r in short] == [r["learning_rate"] for r in long[: len(short)]]
    assert "settings: 4 envs x 500 steps per update" in out and "solve check" in out
    # What is evaluated is said, beside the sampled (training) return; and why the run stopped.
    assert "Training return (sampled)" in out and "Greedy evaluation (10 episodes)" in out
    assert "stopped: the budget of 20,000 env steps per seed is spent" in out


def test_budgets_that_round_are_announced(tmp_path, capsys):
    from reinforce_jax.app.cli import main

    assert main(["train", "--run-dir", str(tmp_path / "r"), "--total-steps", "1000",
                 "--set", "eval_episodes=2"]) == 0  # fmt: skip
    assert "total_steps 1,000 runs as 10,000 steps per seed" in capsys.readouterr().out


def test_multi_seed_runs_report_solved_so_far_and_an_aggregate(tmp_path, capsys):
    from reinforce_jax.app.cli import main

    assert main(["train", "--run-dir", str(tmp_path / "m"), "--num-seeds", "3",
                 "--total-steps", "20000", "--set", "eval_episodes=5"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "solved so far:" in out and "passing now:" in out
    assert "seeds reached threshold 500" in out and "IQM" in out
    assert main(["evaluate", str(tmp_path / "m"), "--episodes", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [s["train_seed"] for s in result["per_seed"]] == [0, 1, 2]
    assert result["aggregate"]["n"] == 3 and result["num_seeds"] == 3
    assert main(["evaluate", str(tmp_path / "m"), "--episodes", "3", "--run-seed", "1",
                 "--json"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["train_seed"] == 1


def test_evaluate_json_is_json_with_one_episode(tmp_path, capsys):
    from reinforce_jax.app.cli import main

    assert main(["evaluate", "--pretrained", "CartPole-v1", "--episodes", "1", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["ci95"] is None and summary["episodes"] == 1


def test_notebook_preset_honours_budgets_and_reports_both_checks(tmp_path, capsys):
    from reinforce_jax.app.cli import main

    assert main(["train", "--preset", "notebook", "--run-dir", str(tmp_path / "nb"),
                 "--total-steps", "2000", "--set", "num_episodes=400"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    run = RunDir.open(tmp_path / "nb")
    train, evals = run.read_jsonl("train.jsonl"), run.read_jsonl("eval.jsonl")
    assert 2000 <= train[-1]["env_steps"] < 2000 + 500 and len(train) < 400
    assert "total_steps (2,000) reached" in out
    assert all("greedy_mean" in r for r in evals) and evals[-1]["episode"] == train[-1]["episode"]
    assert "greedy 100-episode check" in out


def test_mountain_car_says_no_episode_reached_the_goal(tmp_path, capsys):
    from reinforce_jax.app.cli import main

    assert main(["train", "--env", "MountainCar-v0", "--run-dir", str(tmp_path / "mc"),
                 "--total-steps", "20000", "--set", "eval_episodes=5"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "compiled trainer" in out and "compiling the training program" in out
    assert "hint: no episode ever ended before the 200-step time limit" in out
    assert "every return was the same (-200)" in out


def test_discrete_observations_are_one_hot_and_env_args_are_saved(tmp_path, capsys):
    from reinforce_jax.app.cli import main

    run_dir = tmp_path / "fl"
    assert main(["train", "--env", "FrozenLake-v1", "--env-arg", "is_slippery=false",
                 "--run-dir", str(run_dir), "--total-steps", "4000", "--set", "eval_every=2",
                 "--set", "eval_episodes=5", "--quiet"]) == 0  # fmt: skip
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["config"]["env_args"] == {"is_slippery": False}
    assert saved["config"]["trainer"] == "host" and saved["env"]["obs_shape"] == [16]
    capsys.readouterr()
    assert main(["evaluate", str(run_dir), "--episodes", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["episodes"] == 3
    assert main(["train", "--env", "CartPole-v1", "--trainer", "compiled", "--env-arg",
                 "render_mode=rgb_array", "--run-dir", str(tmp_path / "x")]) == 2  # fmt: skip
    assert "no arguments" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_every_option_has_help_text():
    import argparse

    from reinforce_jax.app.cli import build_parser

    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [f"{name} {a.dest}" for name, sub in [("", parser), *subs.choices.items()]
               for a in sub._actions
               if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))
               and not a.help]  # fmt: skip
    assert not missing, missing
