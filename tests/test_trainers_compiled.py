"""The compiled trainer: determinism, seeds as a vmap axis, sharding, budgets and stopping."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading

import jax
import numpy as np
import pytest

from helpers import train_events
from reinforce_jax.config import make_config
from reinforce_jax.envs import make_jax_env
from reinforce_jax.trainers.common import prng_keys
from reinforce_jax.trainers.compiled import (
    group_size,
    make_compiled_program,
    num_updates_for,
    seed_keys,
)

SMALL = dict(num_envs=4, rollout_steps=100, eval_every=2, eval_episodes=8, total_steps=4000)


def run_events(**overrides):
    cfg = make_config("CartPole-v1", overrides={**SMALL, **overrides})
    return cfg, train_events(cfg, threshold=500.0)


def test_events_and_budget():
    cfg, events = run_events()
    train = [r for e in events for r in e.get("train", [])]
    evals = [r for e in events for r in e.get("eval", [])]
    done = events[-1]["done"]
    per_update = cfg.num_envs * cfg.rollout_steps
    assert num_updates_for(cfg) == 10  # 4000 / 400 updates, a whole number of chunks
    assert [r["update"] for r in train] == list(range(1, 11))
    assert [r["env_steps"] for r in train] == [per_update * u for u in range(1, 11)]
    assert [r["update"] for r in evals] == [2, 4, 6, 8, 10]
    assert done["env_steps"] == 4000
    for r in evals:
        assert r["eval_min"] <= r["eval_mean"] <= r["eval_max"] <= 500
        assert r["solved"] == (r["eval_mean"] >= 500)


def test_budget_rounds_up_to_whole_chunks():
    cfg = make_config("CartPole-v1", overrides={**SMALL, "total_steps": 4001})
    assert num_updates_for(cfg) == 12


def test_stop_when_solved_stops_at_first_solve():
    # A threshold of 0 is met by the first evaluation, so one chunk runs.
    cfg = make_config("CartPole-v1", overrides={**SMALL, "stop_when_solved": True})
    events = train_events(cfg, threshold=0.0)
    evals = [r for e in events for r in e.get("eval", [])]
    assert len(evals) == 1 and evals[0]["solved"]
    assert events[-1]["done"]["env_steps"] == cfg.eval_every * cfg.num_envs * cfg.rollout_steps


def test_same_seed_is_bit_identical_and_seeds_differ():
    _, a = run_events(num_seeds=2)
    _, b = run_events(num_seeds=2)
    pa, pb = a[-1]["done"]["params"], b[-1]["done"]["params"]
    for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pb), strict=True):
        np.testing.assert_array_equal(x, y)
    rows = [r for e in a for r in e.get("train", [])]
    by_seed = {s: [r["loss"] for r in rows if r["seed"] == s] for s in (0, 1)}
    assert by_seed[0] != by_seed[1]


def test_each_seed_of_a_vmapped_run_matches_its_own_run():
    cfg = make_config("CartPole-v1", overrides={**SMALL, "seed": 5, "num_seeds": 3})
    assert np.asarray(seed_keys(cfg)).tolist() == [
        np.asarray(jax.random.PRNGKey(s)).tolist() for s in (5, 6, 7)
    ]
    trainer = make_compiled_program(cfg, make_jax_env("CartPole-v1"))
    state = trainer.init(seed_keys(cfg))
    state, metrics = trainer.chunk(state)
    assert metrics["loss"].shape == (3, cfg.eval_every)
    assert metrics["eval_returns"].shape == (3, cfg.eval_episodes)


def test_a_one_row_program_takes_and_gives_what_the_batched_one_does():
    # One row skips the seed vmap (faster to trace); the trainer's bookkeeping must not notice.
    cfg = make_config("CartPole-v1", overrides=SMALL)
    env = make_jax_env("CartPole-v1")
    batched, single = (make_compiled_program(cfg, env, rows=r) for r in (None, 1))
    state = batched.init(seed_keys(cfg))
    shapes = [jax.eval_shape(p.chunk.fun, state) for p in (batched, single)]
    assert jax.tree.structure(shapes[0]) == jax.tree.structure(shapes[1])
    assert jax.tree.leaves(shapes[0]) == jax.tree.leaves(shapes[1])
    _, metrics = single.chunk(state)
    assert metrics["eval_returns"].shape == (1, cfg.eval_episodes)


def test_a_one_row_program_refuses_more_rows_instead_of_dropping_them():
    # It once took the first of several rows silently. A trainer's init over all rows (a test's,
    # say) then had its chunk prepared ahead for that shape: a compile for nothing, and JAX's
    # "donated buffers were not usable" warning, as the outputs held one row.
    cfg = make_config("CartPole-v1", overrides={**SMALL, "num_seeds": 2})
    env = make_jax_env("CartPole-v1")
    single = make_compiled_program(cfg, env, rows=1)
    two_rows = jax.eval_shape(single.init.fun, seed_keys(cfg))
    with pytest.raises(ValueError, match="one row a call"):
        jax.eval_shape(single.chunk.fun, two_rows)
    one_row = jax.tree.map(lambda a: jax.ShapeDtypeStruct((1, *a.shape[1:]), a.dtype), two_rows)
    assert jax.tree.leaves(jax.eval_shape(single.chunk.fun, one_row)[0]) == jax.tree.leaves(one_row)


def test_training_improves_cartpole():
    cfg = make_config("CartPole-v1", overrides={"total_steps": 60_000, "eval_episodes": 20})
    events = train_events(cfg, threshold=500.0)
    evals = [r["eval_mean"] for e in events for r in e.get("eval", [])]
    train = [r["episode_return"] for e in events for r in e.get("train", [])]
    assert np.mean(train[-5:]) > 2 * np.mean(train[:3])  # random play lasts ~22 steps
    assert max(evals) > 150


SHARDED = textwrap.dedent(
    """
    import json, os, sys
    import jax, numpy as np
    from reinforce_jax.config import make_config
    from helpers import train_events
    cfg = make_config("CartPole-v1", overrides=json.loads(sys.argv[1]))
    events = train_events(cfg, threshold=500.0)
    leaf = jax.tree.leaves(events[-1]["done"]["params"])[0]
    rows = [r for e in events for r in e.get("train", []) + e.get("eval", [])]
    print(json.dumps({"devices": jax.device_count(), "rows": rows,
                      "params": [np.asarray(x).tolist() for x in
                                 jax.tree.leaves(events[-1]["done"]["params"])]},
                     default=float))
    """
)


def _run_subprocess(devices: int) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.path.dirname(__file__)  # for helpers
    overrides = json.dumps({**SMALL, "num_seeds": 4, "total_steps": 1600})
    proc = subprocess.run(
        [sys.executable, "-c", SHARDED, overrides], env=env, capture_output=True, text=True,
        timeout=600, check=True,
    )  # fmt: skip
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_sharded_over_two_devices_equals_unsharded():
    one, two = _run_subprocess(1), _run_subprocess(2)
    assert one["devices"] == 1 and two["devices"] == 2
    assert len(one["rows"]) == len(two["rows"])
    for a, b in zip(one["rows"], two["rows"], strict=True):
        assert a.keys() == b.keys()
        # Sampled actions, hence episodes, are identical; losses agree to float32 rounding
        # (each device reduces over its own seeds, so XLA may tile sums differently).
        for key in ("seed", "update", "env_steps", "episodes", "episode_return", "eval_mean"):
            assert a.get(key) == b.get(key), key
        for key in set(a) - {"wall_time"}:
            np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)
    for a, b in zip(one["params"], two["params"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_obs_norm_statistics_live_in_the_parameters():
    # Every trainer can normalise observations: here the statistics follow each rollout inside
    # the compiled program and count every training step once.
    cfg, events = run_events(obs_norm=True)
    stats = jax.tree.map(lambda x: x[0], events[-1]["done"]["params"])["obs_norm"]
    assert set(stats) == {"mean", "var", "count"}
    assert float(stats["count"]) == np.float32(1e-4 + cfg.total_steps)
    assert np.all(np.asarray(stats["var"]) > 0) and np.any(np.asarray(stats["mean"]) != 0)


def _by_seed(events, kind):
    out: dict[int, list[dict]] = {}
    for e in events:
        for r in e.get(kind, []):
            out.setdefault(r["seed"], []).append(r)
    return out


def _same_rows(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            if k != "wall_time":
                assert np.array_equal(x[k], y[k], equal_nan=True), (k, x[k], y[k])


def test_stop_when_solved_stops_each_seed_at_its_solve_and_packs_the_rest():
    # 18 seeds train in 5 groups of 4 (the last padded); seeds stop at their first evaluation >= 150 and the rest
    # are packed into fewer groups. Every seed's numbers up to its solve equal those of a run
    # that never stops (all 18 train to the end), and it keeps the parameters that passed.
    overrides = {**SMALL, "num_seeds": 18}
    cfg = make_config("CartPole-v1", overrides={**overrides, "stop_when_solved": True})
    stop = train_events(cfg, threshold=150.0)
    full = train_events(make_config("CartPole-v1", overrides=overrides), threshold=150.0)
    solved = stop[-1]["done"]["solved_at"]
    chunks = {r["update"] for r in solved.values()}
    assert group_size(18) == 4
    assert len(chunks) >= 3 and 0 < len(solved) < 18  # seeds stop at different times; some never
    stop_train, full_train = _by_seed(stop, "train"), _by_seed(full, "train")
    stop_eval, full_eval = _by_seed(stop, "eval"), _by_seed(full, "eval")
    params = {r["update"]: e["params"] for e in full if "eval" in e for r in e["eval"][:1]}
    final = stop[-1]["done"]["params"]
    for i, seed in enumerate(range(18)):
        at = solved[str(seed)]["update"] if str(seed) in solved else None
        upto = len([r for r in full_eval[seed] if at is None or r["update"] <= at])
        _same_rows(stop_eval[seed], full_eval[seed][:upto])
        _same_rows(stop_train[seed], full_train[seed][: upto * cfg.eval_every])
        kept = params[at if at is not None else max(params)]
        for x, y in zip(jax.tree.leaves(final), jax.tree.leaves(kept), strict=True):
            np.testing.assert_array_equal(np.asarray(x)[i], np.asarray(y)[i])


def test_groups_in_threads_give_the_numbers_of_groups_one_after_another(monkeypatch):
    # 18 seeds in 5 groups of 4: called from 3 threads at once, or one after another on one thread.
    import reinforce_jax.trainers.compiled as compiled

    cfg = make_config("CartPole-v1", overrides={**SMALL, "num_seeds": 18})
    callers, call = set(), compiled._GroupRunner._call

    def recorded(self, rows):
        callers.add(threading.current_thread().name)
        return call(self, rows)

    monkeypatch.setattr(compiled._GroupRunner, "_call", recorded)
    runs = []
    for cores in (3, 1):
        monkeypatch.setattr(compiled, "usable_cores", lambda cores=cores: cores)
        runs.append(train_events(cfg, threshold=500.0))
    threaded, serial = runs
    assert len({c for c in callers if c.startswith("reinforce-jax-group")}) > 1  # ran at once
    assert len(threaded) == len(serial)
    for a, b in zip(threaded, serial, strict=True):
        for kind in ("train", "eval"):
            if kind in a:
                _same_rows(a[kind], b[kind])
    for x, y in zip(jax.tree.leaves(threaded[-1]["done"]["params"]),
                    jax.tree.leaves(serial[-1]["done"]["params"]), strict=True):  # fmt: skip
        np.testing.assert_array_equal(x, y)
    assert not [t for t in threading.enumerate() if t.name.startswith("reinforce-jax-group")]


def test_a_packed_run_resumes_exactly():
    cfg = make_config("CartPole-v1", overrides={**SMALL, "num_seeds": 18, "stop_when_solved": True})
    events = train_events(cfg, threshold=150.0)
    ckpt = next(e["checkpoint"] for e in events if "checkpoint" in e
                and e["checkpoint"].evaluations == 2)  # fmt: skip
    assert ckpt.meta["solved_at"]  # some seeds had stopped already
    resumed = train_events(cfg, threshold=150.0, resume=ckpt)
    after = [e for e in events if "train" in e or "eval" in e][4:]  # the rows after chunk 2
    rest = [e for e in resumed if "train" in e or "eval" in e]
    assert len(after) == len(rest)
    for a, b in zip(after, rest, strict=True):
        _same_rows(a.get("train", a.get("eval")), b.get("train", b.get("eval")))
    for x, y in zip(jax.tree.leaves(events[-1]["done"]["params"]),
                    jax.tree.leaves(resumed[-1]["done"]["params"]), strict=True):  # fmt: skip
        np.testing.assert_array_equal(x, y)


def test_init_compiled_with_the_older_cpu_emitters_gives_the_same_numbers():
    # RUN_ONCE compiles init with XLA's older CPU loop emitters, for compile time only.
    from reinforce_jax.trainers.common import RUN_ONCE

    assert RUN_ONCE["xla_cpu_use_fusion_emitters"] is False
    newer = {**RUN_ONCE, "xla_cpu_use_fusion_emitters": True}
    for env_id in ("CartPole-v1", "Pendulum-v1"):
        cfg = make_config(env_id, overrides={**SMALL, "obs_norm": True})
        program = make_compiled_program(cfg, make_jax_env(env_id))
        keys = prng_keys(range(3))
        fast, other = program.init(keys), jax.jit(program.init.fun, compiler_options=newer)(keys)
        for x, y in zip(jax.tree.leaves(fast), jax.tree.leaves(other), strict=True):
            np.testing.assert_array_equal(x, y)


def test_a_run_with_value_steps_resumes_exactly():
    # The value-only steps' optimizer state is in the checkpoint: resumed from chunk 2, the rows
    # and the final parameters are the uninterrupted run's (a fresh state there would differ).
    cfg = make_config("CartPole-v1", overrides={**SMALL, "value_steps": 3})
    events = train_events(cfg, threshold=500.0)
    ckpt = next(e["checkpoint"] for e in events if "checkpoint" in e
                and e["checkpoint"].evaluations == 2)  # fmt: skip
    plain = make_compiled_program(cfg.replace(value_steps=0), make_jax_env("CartPole-v1"))
    assert len(ckpt.state) > len(jax.tree.leaves(plain.init(prng_keys([0]))))
    resumed = train_events(cfg, threshold=500.0, resume=ckpt)
    after = [e for e in events if "train" in e or "eval" in e][4:]  # the rows after chunk 2
    rest = [e for e in resumed if "train" in e or "eval" in e]
    assert len(after) == len(rest) == 6
    for a, b in zip(after, rest, strict=True):
        _same_rows(a.get("train", a.get("eval")), b.get("train", b.get("eval")))
    for x, y in zip(jax.tree.leaves(events[-1]["done"]["params"]),
                    jax.tree.leaves(resumed[-1]["done"]["params"]), strict=True):  # fmt: skip
        np.testing.assert_array_equal(x, y)


def test_host_made_keys_are_jax_keys():
    seeds = [0, 1, 7, 100, 12345, 2**31 - 1]
    expected = np.stack([np.asarray(jax.random.PRNGKey(s)) for s in seeds])
    got = prng_keys(seeds)
    assert isinstance(got, np.ndarray) and got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(prng_keys([2**31, 5]),
                                  [jax.random.PRNGKey(2**31), jax.random.PRNGKey(5)])  # fmt: skip


PRECHECKED = dict(num_envs=4, rollout_steps=250, eval_every=2, eval_episodes=40,
                  total_steps=40000, num_seeds=4, learning_rate=0.02)  # fmt: skip


def test_a_prechecked_run_reaches_the_solve_verdicts_of_whole_evaluations():
    # Under stop_when_solved an evaluation plays its first 20 of 40 episodes and the rest only
    # where those leave 400 in reach (a mean of 2 x 400 - 500 = 300 over the 20). The
    # run without the stop plays all 40 every time: the same seeds solve at the same updates with
    # the same figures, the training rows agree up to each solve, and a stopped evaluation's
    # first 20 episodes really left 400 out of reach.
    stop = train_events(make_config("CartPole-v1", overrides={**PRECHECKED,
                                    "stop_when_solved": True}), threshold=400.0)  # fmt: skip
    full = train_events(make_config("CartPole-v1", overrides=PRECHECKED), threshold=400.0)
    solved = stop[-1]["done"]["solved_at"]
    assert solved.keys() == full[-1]["done"]["solved_at"].keys() and 0 < len(solved)
    for key, row in solved.items():
        _same_rows([row], [full[-1]["done"]["solved_at"][key]])
    stop_eval, full_eval = _by_seed(stop, "eval"), _by_seed(full, "eval")
    stopped = 0
    for seed, rows in stop_eval.items():
        for r in rows:
            whole = next(f for f in full_eval[seed] if f["update"] == r["update"])
            if r["eval_episodes"] == 40:
                _same_rows([r], [whole])
            else:
                stopped += 1
                assert r["eval_episodes"] == 20 and r["precheck"] and not r["solved"]
                assert r["eval_mean"] < 300.0 and not whole["solved"]
                assert whole["eval_mean"] <= (20 * r["eval_mean"] + 20 * 500.0) / 40
        _same_rows(_by_seed(stop, "train")[seed], _by_seed(full, "train")[seed][: 2 * len(rows)])
    assert stopped > 0  # the check did stop evaluations


def test_a_prechecked_run_plays_every_episode_of_its_last_evaluation():
    # At 499 nothing passes the pre-check, but the budget's last evaluation (the run's final
    # figure) plays all 40 episodes.
    cfg = make_config("CartPole-v1", overrides={**PRECHECKED, "num_seeds": 2,
                                                "total_steps": 8000, "stop_when_solved": True})  # fmt: skip
    evals = _by_seed(train_events(cfg, threshold=499.0), "eval")
    for rows in evals.values():
        assert [r["eval_episodes"] for r in rows] == [20, 20, 20, 40]
    # One seed plays every evaluation whole (its short chunks would not repay the compile).
    one = train_events(cfg.replace(num_seeds=1), threshold=499.0)
    assert [r["eval_episodes"] for r in _by_seed(one, "eval")[0]] == [40] * 4


def test_the_next_chunk_trains_while_the_events_are_handled_and_stopping_drops_it(monkeypatch):
    # When a chunk's events are handed out, the next chunk (its rows known from the solve check)
    # is already submitted; closing the run there (a stop after a checkpoint) waits for it and
    # leaves no thread behind. The run's numbers are those of the run it was cut from.
    import reinforce_jax.trainers.compiled as compiled
    from helpers import spec_for
    from reinforce_jax.trainers import build_trainer
    from reinforce_jax.trainers.events import Checkpoint, TrainRows

    cfg = make_config("CartPole-v1", overrides={**SMALL, "num_seeds": 6})
    submitted, submit = [], compiled._GroupRunner.submit

    def counted(self, groups):
        submitted.append(len(groups))
        return submit(self, groups)

    monkeypatch.setattr(compiled._GroupRunner, "submit", counted)
    run = build_trainer(cfg, spec_for("CartPole-v1", 500.0)).run()
    first = next(run)
    assert isinstance(first, TrainRows)
    assert submitted == [2, 2]  # chunk 0 done, chunk 1 under way (6 seeds: 2 groups of 3)
    kept = []
    for event in run:
        kept.append(event)
        if isinstance(event, Checkpoint):
            break
    run.close()
    assert len(submitted) == 2  # nothing submitted after the close
    assert not [t for t in threading.enumerate() if t.name.startswith("reinforce-jax-group")]
    whole = train_events(cfg, threshold=500.0)
    _same_rows(first.rows, whole[0]["train"])
    _same_rows(kept[0].rows, whole[1]["eval"])
