"""The Python API: train, load_run, pretrained and Run, the very code the command calls."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

import reinforce_jax as rj
from reinforce_jax.app.cli import main
from reinforce_jax.errors import ConfigError


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    """One short compiled run of two seeds (seeds 5 and 6), trained through the API."""
    path = tmp_path_factory.mktemp("api") / "run"
    run = rj.train("CartPole-v1", seed=5, run_dir=path, quiet=True, num_seeds=2,
                   total_steps=10_000, eval_episodes=3)  # fmt: skip
    return run


def cli_json(capsys, *argv: str) -> dict:
    capsys.readouterr()
    assert main(["evaluate", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_api_is_exported_lazily():
    import subprocess
    import sys

    code = ("import sys, reinforce_jax as rj; assert 'reinforce_jax.app.api' not in sys.modules; "
            "assert rj.train.__module__ == 'reinforce_jax.app.api'; "
            "assert {'train', 'load_run', 'pretrained', 'Run'} <= set(dir(rj))")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True)
    with pytest.raises(AttributeError):
        rj.no_such_name  # noqa: B018


def test_train_returns_a_run_with_config_params_and_metrics(two_seeds):
    run = two_seeds
    assert isinstance(run, rj.Run)
    assert run.config.num_seeds == 2 and run.config.seed == 5 and run.config.trainer == "compiled"
    assert run.seeds == [5, 6]
    kernel = run.params["policy"]["params"]["Dense_0"]["kernel"]
    assert np.shape(kernel) == (2, 4, 20)  # every seed, stacked as in params_all_seeds.msgpack
    first = run.policy(5)["policy"]["params"]["Dense_0"]["kernel"]
    np.testing.assert_array_equal(first, kernel[0])
    np.testing.assert_array_equal(run.policy(6)["policy"]["params"]["Dense_0"]["kernel"], kernel[1])
    metrics = run.metrics
    assert {r["seed"] for r in metrics.train} == {5, 6} and metrics.train[-1]["env_steps"] >= 10_000
    assert metrics.eval and all(r["eval_episodes"] == 3 for r in metrics.eval)
    assert run.status["status"] == "finished"


def test_evaluate_gives_the_cli_json(two_seeds, capsys):
    run = two_seeds
    result = run.evaluate(episodes=2)
    assert result == cli_json(capsys, str(run.path), "--episodes", "2")
    assert result["num_seeds"] == 2 and [s["train_seed"] for s in result["per_seed"]] == [5, 6]
    one = run.evaluate(episodes=2, greedy=False, seed=7, run_seed=6)
    assert one == cli_json(capsys, str(run.path), "--episodes", "2", "--sampled", "--seed", "7",
                           "--run-seed", "6")  # fmt: skip
    for key in ("mean", "std", "min", "max", "ci95", "threshold", "solved", "returns"):
        assert key in one
    assert one["train_seed"] == 6 and one["policy"] == "sampled" and len(one["returns"]) == 2
    with pytest.raises(ConfigError, match="seeds"):
        run.evaluate(episodes=2, run_seed=9)
    with pytest.raises(ConfigError, match="episodes"):
        run.evaluate(episodes=0)


def test_load_run_round_trip(two_seeds):
    again = rj.load_run(two_seeds.path)
    assert again.config == two_seeds.config and again.seeds == two_seeds.seeds
    same = jax.tree.map(np.array_equal, again.params, two_seeds.params)
    assert all(jax.tree.leaves(same))
    assert again.metrics == two_seeds.metrics
    with pytest.raises(ConfigError, match="does not exist"):
        rj.load_run(two_seeds.path.parent / "missing")


def test_plot_video_and_html(two_seeds, tmp_path):
    from matplotlib.figure import Figure

    run = two_seeds
    for x in ("env_steps", "wall_time", "episodes"):
        fig = run.plot(x)
        assert isinstance(fig, Figure) and fig.axes[0].get_lines()
    with pytest.raises(ConfigError):
        run.plot("nope")
    out = run.video(tmp_path / "cart.gif", every=4)
    assert out.read_bytes()[:6] in (b"GIF89a", b"GIF87a")
    html = run._repr_html_()
    assert "<table" in html and "CartPole-v1" in html and "finished" in html and "0/2 seeds" in html
    assert "CartPole-v1" in repr(run)


def test_pretrained_evaluates_like_the_cli_and_has_no_run_directory(capsys):
    shipped = rj.pretrained("CartPole-v1")
    assert shipped.path is None and shipped.metrics is None and shipped.status is None
    result = shipped.evaluate(episodes=2)
    assert result == cli_json(capsys, "--pretrained", "CartPole-v1", "--episodes", "2")
    assert result["solved"] and result["source"] == "pretrained CartPole-v1"
    assert "pretrained CartPole-v1" in shipped._repr_html_()
    with pytest.raises(ConfigError, match="no run directory"):
        shipped.plot()
    with pytest.raises(ConfigError, match="no pretrained"):
        rj.pretrained("Acrobot-v1")


@pytest.mark.parametrize(
    "args, kwargs, needle",
    [
        (("NoSuchEnv-v9",), {}, "NoSuchEnv-v9"),
        ((), {"gamma": 1.5}, "gamma"),
        ((), {"preset": "nope"}, "preset"),
        ((), {"no_such_key": 1}, "no_such_key"),
        ((), {"learning_rate": "fast"}, "learning_rate"),
        ((), {"num_envs": 0}, "num_envs"),
        ((), {"seed": -1}, "seed"),
        ((), {"trainer": "notebook", "num_seeds": 2}, "one seed"),
    ],
)
def test_bad_settings_raise_config_error_not_system_exit(tmp_path, args, kwargs, needle):
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError, match=needle):  # SystemExit would escape pytest.raises
        rj.train(*args, run_dir=run_dir, quiet=True, **kwargs)
    assert not run_dir.exists()


def test_single_seed_run_and_the_cli_train_share_the_api(tmp_path, capsys):
    # The command's new runs go through rj.train: same seed, same numbers.
    run = rj.train(run_dir=tmp_path / "api", seed=1, total_steps=10_000, eval_episodes=2)
    out = capsys.readouterr().out
    assert "Training CartPole-v1 with the compiled trainer" in out and "run directory:" in out
    assert main(["train", "--run-dir", str(tmp_path / "cli"), "--seed", "1", "--total-steps",
                 "10000", "--set", "eval_episodes=2", "--quiet"]) == 0  # fmt: skip
    cli = rj.load_run(tmp_path / "cli")
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ("wall_time", "sps")} for r in rs]
    assert strip(run.metrics.train) == strip(cli.metrics.train)
    assert run.config == cli.config and run.seeds == [1]
    assert "solved" in run._repr_html_()


def test_progress_shows_in_a_notebook(monkeypatch, tmp_path):
    """In Jupyter (no terminal) training shows one HTML progress display, updated in place."""
    import io
    import sys

    pytest.importorskip("IPython")
    from reinforce_jax.app import sinks
    from reinforce_jax.config import make_config

    shown = []

    class Handle:
        def update(self, obj):
            shown.append(obj._repr_html_())

    def display(obj, display_id=False):
        shown.append(obj._repr_html_())
        return Handle()

    monkeypatch.setattr("IPython.display.display", display)
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # no terminal, as in a kernel
    monkeypatch.setattr(sinks, "notebook_shell", lambda: object())
    made = sinks.make_sinks(tmp_path, make_config(), 10, "updates", False, False)
    progress = [s for s in made if isinstance(s, sinks.NotebookProgressSink)]
    assert len(progress) == 1
    progress[0].log([{"update": 3, "env_steps": 6000, "episode_return": 42.0, "sps": 1e5}],
                    sinks.TRAIN_NAMES)  # fmt: skip
    for sink in made:
        sink.close()
    assert "<progress value='0' max='10'" in shown[0]
    assert "<progress value='3' max='10'" in shown[-1] and "6,000 steps" in shown[-1]
    assert "return 42.0" in repr(sinks._Html(shown[-1]))
    quiet = sinks.make_sinks(tmp_path / "q", make_config(), 10, "updates", True, False)
    assert not any(isinstance(s, sinks.NotebookProgressSink) for s in quiet)
    for sink in quiet:
        sink.close()
