"""The trainer registry: every setting a trainer cannot run is refused at build time, before any
file is written, with one line and exit code 2 (table-driven over every trainer)."""

from __future__ import annotations

import pytest

from reinforce_jax.app.cli import main
from reinforce_jax.config import ConfigError, make_config
from reinforce_jax.envs import env_spec
from reinforce_jax.trainers import TRAINERS, build_trainer, resolve_trainer

# (trainer, environment, settings it cannot run, words the refusal must contain)
REFUSED = [
    ("compiled", "LunarLander-v3", {}, "no JAX implementation"),
    ("host", "CartPole-v1", {"num_seeds": 2}, "one seed"),
    ("notebook", "CartPole-v1", {"num_seeds": 2}, "one seed"),
    ("notebook", "CartPole-v1", {"baseline": "value"}, "baseline"),
    ("notebook", "CartPole-v1", {"baseline": "mean"}, "baseline"),
    ("notebook", "CartPole-v1", {"normalize_advantages": True}, "normalize_advantages"),
    ("notebook", "CartPole-v1", {"obs_norm": True}, "obs_norm"),
    ("envpool", "FrozenLake-v1", {}, "no envpool version"),
]


def test_every_trainer_is_in_the_table():
    assert {t for t, *_ in REFUSED} == set(TRAINERS)


@pytest.mark.parametrize("trainer, env_id, settings, needle", REFUSED)
def test_build_refuses(trainer, env_id, settings, needle):
    preset = "notebook" if trainer == "notebook" else "default"
    cfg = make_config(env_id, preset, {"trainer": trainer, **settings})
    with pytest.raises(ConfigError, match=needle):
        build_trainer(cfg, env_spec(env_id))


@pytest.mark.parametrize("trainer, env_id, settings, needle", REFUSED)
def test_cli_refuses_before_any_file(tmp_path, capsys, trainer, env_id, settings, needle):
    run_dir = tmp_path / "run"
    preset = "notebook" if trainer == "notebook" else "default"
    sets = [a for k, v in settings.items() for a in ("--set", f"{k}={v}")]
    code = main(["train", "--env", env_id, "--preset", preset, "--trainer", trainer,
                 "--run-dir", str(run_dir), "--quiet", *sets])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err
    assert "--" not in err[0].split(":", 2)[-1]  # below the CLI nobody names a flag
    assert not run_dir.exists()


def test_auto_picks_compiled_where_a_jax_env_exists():
    cfg = make_config("CartPole-v1")
    assert resolve_trainer(cfg.replace(trainer="auto"), env_spec("CartPole-v1")) == "compiled"
    assert resolve_trainer(cfg.replace(trainer="auto"), env_spec("BipedalWalker-v3")) == "host"
