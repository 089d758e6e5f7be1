"""`reinforce evaluate`, `video`, `plot`, `runs` and the TensorBoard log, on a short real run."""

from __future__ import annotations

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reinforce_jax.app.cli import main
from reinforce_jax.config import make_config
from reinforce_jax.evaluate import summarize_returns, t_quantile_975


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("runs") / "cartpole"
    assert main(["train", "--run-dir", str(path), "--total-steps", "30000", "--quiet",
                 "--set", "eval_episodes=10"]) == 0  # fmt: skip
    return path


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("reinforce: error:")
    return err[0]


def test_summary_statistics():
    s = summarize_returns("CartPole-v1", [500, 480, 490, 470], threshold=500.0, greedy=True, seed=0)
    assert s["mean"] == 485.0 and s["min"] == 470 and s["max"] == 500
    half = t_quantile_975(3) * s["std"] / 2
    assert s["ci95"] == pytest.approx([485 - half, 485 + half])
    assert s["thresholds"] == {"gymnasium": 475.0, "notebook": 500.0}
    assert s["verdicts"] == {"gymnasium": True, "notebook": False}
    assert s["solved"] is False


def test_evaluate_json(run_dir, capsys):
    assert main(["evaluate", str(run_dir), "--episodes", "5", "--seed", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("env", "episodes", "mean", "std", "min", "max", "ci95", "threshold", "solved"):
        assert key in result
    assert result["env"] == "CartPole-v1" and result["episodes"] == 5
    assert result["min"] <= result["mean"] <= result["max"]
    assert result["threshold"] == 500.0
    # Fixed seeds give fixed results; greedy and sampled are both available.
    assert main(["evaluate", str(run_dir), "--episodes", "5", "--seed", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["returns"] == result["returns"]
    assert main(["evaluate", str(run_dir), "--episodes", "3", "--sampled"]) == 0
    assert "sampled" in capsys.readouterr().out


def test_video_gif_and_mp4(run_dir, tmp_path, capsys):
    gif = tmp_path / "cart.gif"
    assert main(["video", str(run_dir), "--out", str(gif), "--every", "4"]) == 0
    assert gif.read_bytes()[:6] in (b"GIF89a", b"GIF87a")
    mp4 = tmp_path / "cart.mp4"
    assert main(["video", str(run_dir), "--out", str(mp4)]) == 0
    assert mp4.read_bytes()[4:8] == b"ftyp"


def test_video_renders_only_the_frames_it_keeps(monkeypatch):
    from reinforce_jax.app import video
    from reinforce_jax.policies import load_pretrained

    cfg, params = load_pretrained("CartPole-v1")
    params = jax.tree.map(jnp.zeros_like, params)  # uniform actions: short episodes, few frames
    rendered = []
    make = video.make_gym_env

    def counting(*args, **kwargs):  # counts the frames the environment renders
        env = make(*args, **kwargs)
        render = env.render
        env.render = lambda: rendered.append(1) or render()
        return env

    monkeypatch.setattr(video, "make_gym_env", counting)
    all_frames, returns, fps = video.record(cfg, params, "CartPole-v1", 3, 5, False)
    assert len(rendered) == len(all_frames) == sum(returns) + 3  # a frame per step, and resets
    assert len(set(returns)) > 1
    rendered.clear()
    kept, again, fps7 = video.record(cfg, params, "CartPole-v1", 3, 5, False, every=7)
    assert again == returns and fps7 == pytest.approx(fps / 7)
    # one frame in 7, counted across the episodes, and no other frame rendered
    assert len(rendered) == len(kept) == len(all_frames[::7])
    for a, b in zip(kept, all_frames[::7], strict=True):
        np.testing.assert_array_equal(a, b)


def test_plot_several_runs_as_svg_and_runs_listing(run_dir, tmp_path, capsys):
    out = tmp_path / "curves.svg"
    assert main(["plot", str(run_dir), str(run_dir), "--x", "wall_time", "--out", str(out)]) == 0
    assert out.read_text().lstrip().startswith("<?xml")
    assert main(["runs", str(run_dir.parent)]) == 0
    listing = capsys.readouterr().out
    assert "cartpole" in listing and "CartPole-v1" in listing and "finished" in listing


def test_tensorboard_event_file(run_dir):
    files = list((run_dir / "tb").glob("events.out.tfevents.*"))
    assert len(files) == 1
    data = files[0].read_bytes()
    for tag in (b"charts/episodic_return", b"losses/policy_loss", b"eval/mean", b"charts/SPS"):
        assert tag in data


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["evaluate", "{missing}"], "does not exist"),
        (["evaluate", "--pretrained", "NoSuchEnv-v0"], "NoSuchEnv-v0"),
        (["evaluate"], "either"),
        (["evaluate", "{run}", "--episodes", "0"], "--episodes"),
        (["video", "{run}", "--out", "{tmp}/clip.avi"], ".mp4 or .gif"),
        (["video", "{run}", "--out", "{tmp}/no/such/dir/clip.gif"], "does not exist"),
        (["plot", "{run}", "--out", "{tmp}/curve.jpg"], ".png or .svg"),
        (["plot", "{foreign}"], "not a reinforce-jax run"),
        (["runs", "{missing}"], "no runs directory"),
    ],
)
def test_tool_errors_are_one_line_exit_2(run_dir, tmp_path, capsys, argv, needle):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    subs = {"run": str(run_dir), "missing": str(tmp_path / "missing"), "tmp": str(tmp_path),
            "foreign": str(foreign)}  # fmt: skip
    before = sorted(p.name for p in run_dir.iterdir())
    assert main([a.format(**subs) for a in argv]) == 2
    assert needle in error_line(capsys)
    assert sorted(p.name for p in run_dir.iterdir()) == before


def test_pretrained_cartpole_solves(capsys):
    assert main(["evaluate", "--pretrained", "CartPole-v1", "--episodes", "20", "--seed", "7",
                 "--json"]) == 0  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    assert result["mean"] >= 475.0


def test_config_file_with_command_line_overrides(tmp_path, capsys):
    cfg_file = tmp_path / "exp.toml"
    cfg_file.write_text('learning_rate = 0.005\nhidden_sizes = [16, 16]\ntotal_steps = 4000\n'
                        'eval_episodes = 4\nseed = 9\n')  # fmt: skip
    run = tmp_path / "run"
    assert main(["train", "--config", str(cfg_file), "--seed", "2", "--run-dir", str(run),
                 "--quiet"]) == 0  # fmt: skip
    saved = json.loads((run / "config.json").read_text())["config"]
    assert saved["learning_rate"] == 0.005 and saved["hidden_sizes"] == [16, 16]
    assert saved["seed"] == 2  # the flag wins over the file
    bad = tmp_path / "bad.toml"
    bad.write_text("learning_rate = \n")
    assert main(["train", "--config", str(bad), "--run-dir", str(tmp_path / "x")]) == 2
    assert "bad.toml" in error_line(capsys)
    assert not (tmp_path / "x").exists()


def test_runs_table_plot_by_episodes_and_per_seed_tensorboard(tmp_path, capsys):
    import os

    root = tmp_path / "runs"
    assert main(["train", "--run-dir", str(root / "multi"), "--num-seeds", "2",
                 "--total-steps", "20000", "--set", "eval_episodes=5", "--quiet"]) == 0  # fmt: skip
    assert {p.name for p in (root / "multi" / "tb").iterdir()} == {"seed0", "seed1"}
    # A run whose process died without a word shows as dead, not running.
    dead = root / "dead"
    shutil.copytree(root / "multi", dead)
    status = json.loads((dead / "status.json").read_text())
    status.update(status="running", pid=2**22 + 12345, host=os.uname().nodename)
    (dead / "status.json").write_text(json.dumps(status))
    capsys.readouterr()
    assert main(["runs", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["run", "env", "trainer", "seeds", "env", "steps", "final", "eval",
                                "solved", "wall", "status"]  # fmt: skip
    multi = next(ln for ln in lines if ln.startswith("multi"))
    assert " 2 " in multi and "/2" in multi and "finished" in multi
    assert "dead" in next(ln for ln in lines if ln.startswith("dead"))
    out = tmp_path / "ep.png"
    assert main(["plot", str(root / "multi"), "--x", "episodes", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000


def _events(path):
    """The Event protos of a TensorBoard event file (TFRecord: length, CRC, data, CRC)."""
    import struct

    from tensorboardX.proto.event_pb2 import Event

    data, events, at = path.read_bytes(), [], 0
    while at < len(data):
        (length,) = struct.unpack("<Q", data[at : at + 8])
        events.append(Event.FromString(data[at + 12 : at + 12 + length]))
        at += 12 + length + 4
    return events


def test_tensorboard_sink_writes_each_row_as_one_event_and_marks_a_purge(tmp_path):
    from reinforce_jax.app.sinks import EVAL_NAMES, TRAIN_NAMES, TensorBoardSink

    cfg = make_config("CartPole-v1", overrides={"num_seeds": 2})
    sink = TensorBoardSink(tmp_path, cfg, purge_step=3000)
    sink.log([{"seed": s, "env_steps": 1000 * u, "loss": 0.5 * u + s, "episode_return": 9.0}
              for s in (0, 1) for u in (1, 2)], TRAIN_NAMES)  # fmt: skip
    sink.log([{"seed": 1, "env_steps": 2000, "eval_mean": 42.0, "eval_std": float("nan")}],
             EVAL_NAMES)  # fmt: skip
    sink.close()
    seed1 = _events(next((tmp_path / "tb" / "seed1").glob("events.out.tfevents.*")))
    assert seed1[0].file_version == "brain.Event:2"
    assert seed1[1].step == 3000 and seed1[2].session_log.status == 1  # purge: START at 3000
    scalars = [(e.step, {v.tag: v.simple_value for v in e.summary.value})
               for e in seed1 if e.summary.value]  # fmt: skip
    # Several seeds: each seed's last update of the batch only; NaN is left out.
    assert scalars == [(2000, {"losses/loss": 2.0, "charts/episodic_return": 9.0}),
                       (2000, {"eval/mean": 42.0})]  # fmt: skip
    seed0 = _events(next((tmp_path / "tb" / "seed0").glob("events.out.tfevents.*")))
    assert any(v.tag.startswith("config") for e in seed0 for v in e.summary.value)


def test_tensorboard_sink_flushes_on_a_clock_not_per_row(tmp_path, monkeypatch):
    from reinforce_jax.app.sinks import TRAIN_NAMES, TensorBoardSink

    sink = TensorBoardSink(tmp_path, make_config("CartPole-v1"))
    path = next((tmp_path / "tb").glob("events.out.tfevents.*"))
    sink.log([{"env_steps": 100, "loss": 1.0}], TRAIN_NAMES)
    assert not any(e.summary.value for e in _events(path) if e.step == 100)  # buffered
    monkeypatch.setattr(TensorBoardSink, "FLUSH_SECS", 0.0)
    sink.log([{"env_steps": 200, "loss": 2.0}], TRAIN_NAMES)
    assert [e.step for e in _events(path) if e.summary.value and e.step] == [100, 200]
    sink.close()


def test_the_moving_average_is_the_trailing_nanmean():
    from reinforce_jax.app.plots import moving_average

    rng = np.random.default_rng(0)
    x = rng.normal(100.0, 50.0, 300)
    x[rng.random(300) < 0.2] = np.nan
    x[40:60] = np.nan  # a stretch longer than the window: NaN there
    for window in (1, 5, 20):
        expected = [np.nanmean(x[max(0, i - window + 1) : i + 1])
                    if np.isfinite(x[max(0, i - window + 1) : i + 1]).any() else np.nan
                    for i in range(len(x))]  # fmt: skip
        np.testing.assert_allclose(moving_average(x, window), expected, rtol=1e-9)
    assert len(moving_average(np.array([]), 5)) == 0
