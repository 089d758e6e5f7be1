"""The envpool trainer: the typed events every trainer yields, seeds in one pool, resume with
fresh episodes, ``auto`` picking it for LunarLanderContinuous (or the host trainer, with a notice,
without envpool)."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from tests.helpers import train_events

from reinforce_jax.config import make_config
from reinforce_jax.envs import env_spec
from reinforce_jax.envs import envpool as pools
from reinforce_jax.trainers import build_trainer, resolve_trainer
from reinforce_jax.trainers.events import Checkpoint
from reinforce_jax.trainers.pool import step_scale

needs_envpool = pytest.mark.skipif(not pools.available(), reason="envpool not installed")

SMALL = dict(trainer="envpool", num_envs=4, rollout_steps=50, eval_every=2, eval_episodes=3,
             total_steps=1600, hidden_sizes=(8,))  # fmt: skip


def test_auto_and_the_defaults_train_lunarlander_on_envpool_with_td_lambda():
    cfg = make_config("LunarLander-v3", overrides={"trainer": "auto"})
    assert resolve_trainer(cfg, env_spec("LunarLander-v3")) == "envpool"
    assert resolve_trainer(cfg.replace(env_id="CartPole-v1"), env_spec("CartPole-v1")) == "compiled"
    default = make_config("LunarLander-v3")
    assert resolve_trainer(default, env_spec("LunarLander-v3")) == "envpool"
    assert default.return_lambda == 0.95
    assert resolve_trainer(cfg, env_spec("LunarLander-v3", {"enable_wind": True})) == "host"


NOT_INSTALLED = "envpool is not installed (it has wheels for Linux x86-64 only)"


def test_without_envpool_the_envpool_trainer_falls_back_to_host_with_a_notice(monkeypatch):
    monkeypatch.setattr(pools, "unavailable", lambda: NOT_INSTALLED)
    cfg = make_config("LunarLander-v3", overrides={"trainer": "envpool"})
    trainer = build_trainer(cfg, env_spec("LunarLander-v3"))
    assert trainer.name == "host"
    assert "envpool is not installed" in trainer.startup_note
    assert trainer.cfg.return_lambda == 0.95  # the host trainer learns the same returns


def test_auto_and_the_defaults_train_lunarlander_continuous_on_envpool_else_host(monkeypatch):
    spec = env_spec("LunarLanderContinuous-v3")
    auto = make_config("LunarLanderContinuous-v3", overrides={"trainer": "auto"})
    assert resolve_trainer(auto, spec) == "envpool"
    assert make_config("LunarLanderContinuous-v3").trainer == "envpool"
    windy = env_spec("LunarLanderContinuous-v3", {"enable_wind": True})  # no envpool twin
    assert resolve_trainer(auto, windy) == "host"
    monkeypatch.setattr(pools, "unavailable", lambda: NOT_INSTALLED)
    for cfg in (auto, make_config("LunarLanderContinuous-v3")):
        trainer = build_trainer(cfg, spec)
        assert trainer.name == "host"
        assert "envpool is not installed" in trainer.startup_note


@needs_envpool
def test_events_rows_and_forced_last_evaluation():
    cfg = make_config("CartPole-v1", overrides={**SMALL, "num_seeds": 2, "seed": 3})
    events = train_events(
        cfg, threshold=10_000.0
    )  # never solved: no chunk passes the pre-check, only the last evaluates
    train = [r for e in events if "train" in e for r in e["train"]]
    evals = [r for e in events if "eval" in e for r in e["eval"]]
    ckpts = [e["checkpoint"] for e in events if "checkpoint" in e]
    done = events[-1]["done"]
    assert {r["seed"] for r in train} == {3, 4}
    assert len(train) == 2 * 8 and [c.evaluations for c in ckpts] == [1, 2, 3, 4]
    assert [r["update"] for r in evals] == [8, 8] and all(r["eval_episodes"] == 3 for r in evals)
    assert all(0 < r["eval_mean"] <= 500 for r in evals)
    assert done["env_steps"] == 8 * 200
    assert all(r["valid_steps"] <= 200 for r in train)
    assert np.asarray(done["params"]["policy"]["params"]["Dense_0"]["kernel"]).shape[0] == 2
    ended = [r for r in train if r["episodes"] > 0]
    assert ended and all(np.isfinite(r["episode_return"]) for r in ended)
    # The greedy pre-check runs after every chunk but the last (which evaluates in full) whatever
    # the sampled return.
    pre = [(r["seed"], r["update"]) for r in train if "precheck_mean" in r]
    assert pre == [(s, u) for u in (2, 4, 6) for s in (3, 4)]
    assert all(0 < r["precheck_mean"] <= 500 for r in train if "precheck_mean" in r)


@needs_envpool
def test_the_chunk_program_is_lowered_before_the_preload_may_start(monkeypatch):
    # The session's background imports hold the GIL, as tracing does: they wait for this event,
    # which is set once the chunk program is lowered, while XLA compiles it.
    trainer = build_trainer(make_config("CartPole-v1", overrides=SMALL), env_spec("CartPole-v1"))
    assert not trainer.tracing_done.is_set()
    seen, real = [], jax.stages.Lowered.compile

    def compile(self, *args, **kwargs):
        seen.append(trainer.tracing_done.is_set())
        return real(self, *args, **kwargs)

    monkeypatch.setattr(jax.stages.Lowered, "compile", compile)
    events = trainer.run()
    next(events)  # the first chunk's rows
    events.close()
    # The chunk's compile (the last) once the event was set; the init program's before it, when
    # the export cache compiles that one ahead, while the chunk's tracing was still to come.
    assert seen in ([True], [False, True])


@needs_envpool
def test_the_chunk_program_is_kept_between_runs_and_gives_the_same_numbers(tmp_path, monkeypatch):
    # With the route handler, the chunk program names no pool: its export is stored on the first
    # run and loaded (not traced) on the next; both equal plain jax.jit's numbers.
    from reinforce_jax.envs import envpool_route
    from reinforce_jax.trainers import export_cache

    if envpool_route.unavailable() is not None:
        pytest.skip(f"no route handler here: {envpool_route.unavailable()}")
    cfg = make_config("CartPole-v1", overrides={**SMALL, "num_seeds": 2, "total_steps": 800})
    strip = lambda events: [{k: v for k, v in e.items() if k != "wall_time"}  # noqa: E731
                            for e in _rows(events)]  # fmt: skip
    before = export_cache.directory()
    try:
        export_cache.set_directory(None)
        plain = strip(train_events(cfg, threshold=10_000.0))
        export_cache.set_directory(tmp_path)
        exports, real = [], jax.export.export
        monkeypatch.setattr(
            jax.export, "export", lambda *a, **k: exports.append(1) or real(*a, **k)
        )
        first = strip(train_events(cfg, threshold=10_000.0))
        stored = sorted(p.name.split("-")[1] for p in tmp_path.iterdir())
        assert exports and stored == ["chunk", "init"]
        exports.clear()
        second = strip(train_events(cfg, threshold=10_000.0))
        assert exports == []  # loaded, not traced again
    finally:
        export_cache.set_directory(before)
    assert first == plain and second == plain


def _rows(events):
    """Every train and eval row, then the final parameters' leaves (as lists)."""
    rows = [row for e in events for row in e.get("train", []) + e.get("eval", [])]
    final = jax.tree.leaves(events[-1]["done"]["params"])
    return rows + [{"leaf": np.asarray(x).tolist()} for x in final]


@needs_envpool
def test_the_start_up_note_says_when_the_program_cannot_be_cached(monkeypatch):
    from reinforce_jax.envs import envpool_route

    cfg = make_config("CartPole-v1", overrides=SMALL)
    assert "cached afterwards" in build_trainer(cfg, env_spec("CartPole-v1")).startup_note
    monkeypatch.setattr(envpool_route, "unavailable", lambda: "no C compiler (cc) on PATH")
    note = build_trainer(cfg, env_spec("CartPole-v1")).startup_note
    assert "on every run" in note and note.endswith("no C compiler (cc) on PATH)")


@needs_envpool
def test_solves_a_low_threshold_and_stops():
    cfg = make_config("CartPole-v1", overrides={**SMALL, "stop_when_solved": True})
    events = train_events(cfg, threshold=5.0)  # any policy passes once evaluated
    done = events[-1]["done"]
    assert "0" in done["solved_at"]


@needs_envpool
def test_resume_restores_the_learner_and_starts_fresh_episodes():
    cfg = make_config("CartPole-v1", overrides=SMALL)
    full = train_events(cfg, threshold=10_000.0)
    ckpt = [e["checkpoint"] for e in full if "checkpoint" in e][1]
    trainer = build_trainer(cfg, env_spec("CartPole-v1"))
    trainer.check_resume(ckpt)
    resumed = train_events(cfg, threshold=10_000.0, resume=ckpt)
    updates = [r["update"] for e in resumed if "train" in e for r in e["train"]]
    assert updates == [5, 6, 7, 8]
    assert resumed[-1]["done"]["env_steps"] == full[-1]["done"]["env_steps"]


@needs_envpool
def test_a_run_with_value_steps_checkpoints_and_resumes_its_value_optimizer():
    cfg = make_config("CartPole-v1", overrides={**SMALL, "num_seeds": 2, "value_steps": 2})
    full = train_events(cfg, threshold=10_000.0)
    ckpt = [e["checkpoint"] for e in full if "checkpoint" in e][1]
    plain = [e["checkpoint"] for e in train_events(cfg.replace(value_steps=0), threshold=10_000.0)
             if "checkpoint" in e][1]  # fmt: skip
    assert len(ckpt.state) > len(plain.state)  # the value-only Adam state is saved
    trainer = build_trainer(cfg, env_spec("CartPole-v1"))
    trainer.check_resume(ckpt)
    resumed = train_events(cfg, threshold=10_000.0, resume=ckpt)
    updates = [(r["update"], r["seed"]) for e in resumed if "train" in e for r in e["train"]]
    assert sorted(updates) == [(u, s) for u in (5, 6, 7, 8) for s in (0, 1)]
    # Fresh episodes after a resume, but the learner restarts from the saved state exactly: its
    # next checkpoint's value-only optimizer counts on from the saved one's (2 steps an update).
    counts = lambda c: sorted(int(x.max()) for x in c.state.values() if x.dtype == np.int32)  # noqa: E731
    after = [e["checkpoint"] for e in resumed if "checkpoint" in e][0]
    assert after.evaluations == ckpt.evaluations + 1
    assert max(counts(after)) == max(counts(ckpt)) + 2 * cfg.eval_every


@needs_envpool
def test_td_lambda_returns_learn_every_real_step_in_its_own_window():
    cfg = make_config("CartPole-v1", overrides={**SMALL, "num_seeds": 2, "return_lambda": 0.9})
    trainer = build_trainer(cfg, env_spec("CartPole-v1"))
    assert trainer.carry_steps == 0  # nothing waits for its episode to end
    events = train_events(cfg, threshold=10_000.0)
    train = [r for e in events if "train" in e for r in e["train"]]
    assert len(train) == 2 * 8
    # every real step of the window is learned at once (the carried window learns only those of
    # ended episodes), and none is dropped
    assert all(r["learn_steps"] == r["valid_steps"] > 0 for r in train)
    assert all(r["dropped_steps"] == 0 for r in train)
    assert all(np.isfinite(r["value_loss"]) and np.isfinite(r["policy_loss"]) for r in train)
    mc = [r for e in train_events(cfg.replace(return_lambda=1.0), threshold=10_000.0)
          if "train" in e for r in e["train"]]  # fmt: skip
    assert any(r["learn_steps"] < r["valid_steps"] for r in mc)


def test_step_scale_shrinks_updates_learned_from_few_episodes():
    counts = {"learn_steps": np.array([0.0, 300.0, 900.0, 2000.0]),
              "learn_episodes": np.array([0.0, 1.0, 3.0, 9.0])}  # fmt: skip
    np.testing.assert_allclose(step_scale(counts, 0), [0, 1, 1, 1])  # off: a full step or none
    np.testing.assert_allclose(step_scale(counts, 4), [0, 0.25, 0.75, 1])


@needs_envpool
def test_min_episodes_scales_each_seeds_step_by_its_finished_episodes():
    base = make_config("CartPole-v1", overrides={**SMALL, "num_seeds": 2})
    kernel = lambda events: np.asarray(  # noqa: E731
        events[-1]["done"]["params"]["policy"]["params"]["Dense_0"]["kernel"]
    )
    runs = {m: train_events(base.replace(min_episodes=m), threshold=10_000.0)
            for m in (0, 1, 1000, 10**9)}  # fmt: skip
    rows = [r for e in runs[1000] if "train" in e for r in e["train"]]
    assert any(r["learn_episodes"] > 0 for r in rows)
    for r in rows:  # at most 4 envs x 50 steps / 10 steps per episode end in a window
        assert r["step_scale"] == pytest.approx(r["learn_episodes"] / 1000)
    # one finished episode is enough for a full step; 10**9 barely moves from the start
    np.testing.assert_allclose(kernel(runs[1]), kernel(runs[0]), atol=1e-5)
    start = kernel(runs[10**9])
    assert np.abs(kernel(runs[1000]) - start).max() < 0.05 * np.abs(kernel(runs[0]) - start).max()


@needs_envpool
def test_stop_when_solved_freezes_a_solved_seed_at_the_parameters_that_passed():
    cfg = make_config("CartPole-v1", overrides={**SMALL, "num_seeds": 2, "seed": 3,
                                                "stop_when_solved": True, "obs_norm": True})  # fmt: skip
    full = train_events(cfg, threshold=10_000.0)
    ckpt = [e["checkpoint"] for e in full if "checkpoint" in e][1]
    # resume as if seed 3 had passed its solve check at that checkpoint
    solved = Checkpoint(ckpt.evaluations, ckpt.state, {"solved_at": {"3": {"update": 4}}})
    events = train_events(cfg, threshold=10_000.0, resume=solved)
    kernel = np.asarray(events[-1]["done"]["params"]["policy"]["params"]["Dense_0"]["kernel"])
    at_solve = [leaf for leaf in ckpt.state.values() if leaf.shape == kernel.shape]
    assert any(np.array_equal(leaf[0], kernel[0]) for leaf in at_solve)  # seed 3: unchanged
    assert not any(np.array_equal(leaf[1], kernel[1]) for leaf in at_solve)  # seed 4 learned on
    # the observation statistics it passed with are frozen too
    stats = [np.asarray(x) for x in jax.tree.leaves(events[-1]["done"]["params"]["obs_norm"])]
    saved = list(ckpt.state.values())
    for x in stats:
        assert any(y.shape == x.shape and np.array_equal(y[0], x[0]) for y in saved)
        assert not any(y.shape == x.shape and np.array_equal(y[1], x[1]) for y in saved)
    rows = [r for e in events if "train" in e for r in e["train"]]
    assert all(r["step_scale"] == 0 for r in rows if r["seed"] == 3)
