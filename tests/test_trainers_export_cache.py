"""The cache of exported (traced and lowered) programs: same numbers as jax.jit, reuse only where
everything that shapes a program matches, and a safe fallback on damaged files."""

from __future__ import annotations

import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reinforce_jax.config import make_config
from reinforce_jax.envs.registry import make_jax_env
from reinforce_jax.trainers import compiled, export_cache
from reinforce_jax.trainers.export_cache import cached_jit, program_key


@pytest.fixture(autouse=True)
def _keep_the_sessions_directory():
    # The tests here point the cache elsewhere; the session's own directory comes back after.
    before = export_cache.directory()
    yield
    export_cache.set_directory(before)


@pytest.fixture
def cache_dir(tmp_path):
    export_cache.set_directory(tmp_path / "programs")
    return tmp_path / "programs"


class Traced:
    """A function that counts its traces (a reused exported program is never traced)."""

    def __init__(self, scale: float):
        self.scale, self.traces = scale, 0

    def __call__(self, x, y):
        self.traces += 1
        return {"sum": jnp.sin(x) * self.scale + y.sum(), "pair": (x, y)}


def small_config(**overrides):
    cfg = dict(num_envs=2, rollout_steps=20, eval_every=2, eval_episodes=3, num_seeds=2,
               hidden_sizes=(8,), total_steps=160)  # fmt: skip
    return make_config("CartPole-v1", overrides={**cfg, **overrides})


def run_chunks(cfg, chunks=2):
    program = compiled.make_compiled_program(cfg, make_jax_env(cfg.env_id))
    state = program.init(compiled.seed_keys(cfg))
    out = [jax.device_get(state)]
    for _ in range(chunks):
        state, metrics = program.chunk(state)  # donates the previous state
        out.append(jax.device_get((state, metrics)))
    # As a resumed run does: the state rebuilt from host copies.
    state, metrics = program.chunk(jax.tree.map(jnp.asarray, out[-1][0]))
    out.append(jax.device_get((state, metrics)))
    return out


def assert_identical(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_compiled_programs_match_plain_jit_bitwise(cache_dir):
    cfg = small_config()
    export_cache.set_directory(None)
    plain = run_chunks(cfg)
    export_cache.set_directory(cache_dir)
    first = run_chunks(cfg)  # traces, exports and stores init and chunk
    stored = sorted(p.name.split("-")[0] for p in cache_dir.glob("*.jaxexport"))
    assert stored == ["chunk", "init"]
    again = run_chunks(cfg)  # deserialises them
    assert_identical(plain, first)
    assert_identical(plain, again)


def test_a_stored_program_is_reused_without_tracing(cache_dir):
    x, y = jnp.arange(3.0), jnp.ones((2, 2))
    f = Traced(2.0)
    expected = jax.jit(Traced(2.0))(x, y)
    assert_identical(cached_jit(f, "toy", {"scale": 2.0})(x, y), expected)
    assert f.traces == 1
    g = Traced(2.0)  # a new process would build a new function: same key, same program
    assert_identical(cached_jit(g, "toy", {"scale": 2.0})(x, y), expected)
    assert g.traces == 0


def test_a_different_key_or_argument_type_makes_a_new_program(cache_dir):
    x, y = jnp.arange(3.0), jnp.ones((2, 2))
    cached_jit(Traced(2.0), "toy", {"scale": 2.0})(x, y)
    h = Traced(3.0)
    out = cached_jit(h, "toy", {"scale": 3.0})(x, y)
    assert h.traces == 1
    assert_identical(out, jax.jit(Traced(3.0))(x, y))
    k = Traced(3.0)
    cached_jit(k, "toy", {"scale": 3.0})(x.astype(jnp.int32), y)
    assert k.traces == 1
    assert len(list(cache_dir.glob("toy-*.jaxexport"))) == 3


def test_program_key_ignores_only_settings_outside_the_program():
    env = make_jax_env("CartPole-v1")
    base = program_key(small_config(), env)
    assert program_key(small_config(seed=7, stop_when_solved=True), env) == base
    assert program_key(small_config(learning_rate=0.02), env) != base
    assert program_key(small_config(total_steps=320), env) != base  # the lr schedule's horizon
    assert program_key(small_config(), make_jax_env("Acrobot-v1")) != base


@pytest.mark.parametrize("damage", ["garbage", "truncated", "flipped", "empty"])
def test_a_damaged_file_falls_back_and_is_replaced(cache_dir, damage):
    x, y = jnp.arange(3.0), jnp.ones((2, 2))
    expected = jax.jit(Traced(2.0))(x, y)
    cached_jit(Traced(2.0), "toy", {"scale": 2.0})(x, y)
    (path,) = cache_dir.glob("toy-*.jaxexport")
    good = path.read_bytes()
    bad = {"garbage": b"\x00\xff" * 500, "truncated": good[: len(good) // 2],
           "flipped": good[:-10] + bytes([good[-10] ^ 1]) + good[-9:], "empty": b""}[damage]  # fmt: skip
    path.write_bytes(bad)
    f = Traced(2.0)
    assert_identical(cached_jit(f, "toy", {"scale": 2.0})(x, y), expected)
    assert f.traces == 1  # traced anew, not read from the damaged file
    assert path.read_bytes() != bad
    g = Traced(2.0)
    cached_jit(g, "toy", {"scale": 2.0})(x, y)
    assert g.traces == 0  # the rewritten file is good again


def test_no_directory_means_plain_jit(tmp_path):
    export_cache.set_directory(None)
    x, y = jnp.arange(3.0), jnp.ones((2, 2))
    cached_jit(Traced(2.0), "toy", {})(x, y)
    g = Traced(2.0)
    cached_jit(g, "toy", {})(x, y)
    assert g.traces == 1
    assert not any(tmp_path.iterdir())


def test_an_unusable_program_falls_back_to_jit(cache_dir, monkeypatch):
    def broken(*_):
        raise RuntimeError("export failed")

    monkeypatch.setattr(jax.export, "export", broken)
    x, y = jnp.arange(3.0), jnp.ones((2, 2))
    assert_identical(cached_jit(Traced(2.0), "toy", {})(x, y), jax.jit(Traced(2.0))(x, y))


def test_a_fed_program_is_prepared_from_the_feeders_output_types(cache_dir):
    class Step:
        traces = 0

        def __call__(self, state):
            self.traces += 1
            return {"x": state["x"] * 2.0, "n": state["n"] + 1}

    second = Step()
    chunk = cached_jit(second, "second", {})
    init = cached_jit(lambda x: {"x": jnp.cos(x), "n": jnp.zeros((), jnp.int32)}, "first", {},
                      feeds=chunk)  # fmt: skip
    state = init(jnp.arange(4.0))
    prepared = chunk.programs[export_cache.signature((state,))].result()  # waits for the thread
    assert prepared is not chunk.plain and second.traces == 1
    assert_identical(chunk(state), jax.jit(Step())(state))
    assert second.traces == 1  # the call used the program prepared in the background
    # Warm: the stored program is read when called (two cache reads at once gain nothing).
    again = Step()
    chunk = cached_jit(again, "second", {})
    init = cached_jit(lambda x: {"x": jnp.cos(x), "n": jnp.zeros((), jnp.int32)}, "first", {},
                      feeds=chunk)  # fmt: skip
    state = init(jnp.arange(4.0))
    assert chunk.programs == {}
    assert_identical(chunk(state), jax.jit(Step())(state))
    assert again.traces == 0


SHARED_ENTRY = """
import sys, jax, jax.numpy as jnp
from reinforce_jax.trainers import export_cache
jax.config.update("jax_compilation_cache_dir", sys.argv[1] + "/jax")
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
export_cache.set_directory(sys.argv[1] + "/programs")
events = []
jax.monitoring.register_event_listener(lambda e, **_: events.append(e))
step = export_cache.cached_jit(lambda s: {"x": s["x"] * 2.0}, "second", {})
first = export_cache.cached_jit(lambda x: {"x": jnp.cos(x)}, "first", {}, feeds=step)
step(first(jnp.arange(4.0)))
count = lambda name: events.count("/jax/compilation_cache/" + name)
print(count("compile_requests_use_cache") - count("cache_hits"))  # compiled, not read
"""


def test_a_program_prepared_ahead_shares_the_compile_cache_entry(tmp_path):
    # Cold: the second program is prepared ahead from types; warm: at its call, from arrays.
    import subprocess
    import sys

    run = lambda: subprocess.run([sys.executable, "-c", SHARED_ENTRY, str(tmp_path)],
                                 capture_output=True, text=True, check=True).stdout.split()[-1]  # fmt: skip
    assert run() != "0"
    assert run() == "0"  # every program read from JAX's compilation cache, none compiled again


def test_compiling_is_signalled_once_the_last_program_of_a_chain_goes_to_xla(cache_dir):
    # Background imports wait for it: the feeding program's compile does not count (the fed
    # one's tracing is still to come), the fed one's does.
    export_cache.COMPILING.clear()
    try:
        release, traced = threading.Event(), threading.Event()

        def slow_step(state):  # holds the fed program's tracing until released
            traced.set()
            release.wait(30)
            return {"x": state["x"] + 1.0}

        chunk = cached_jit(slow_step, "slow", {})
        init = cached_jit(lambda x: {"x": jnp.cos(x)}, "feeder", {}, feeds=chunk)
        state = init(jnp.arange(3.0))  # compiled and run; the fed one is being traced
        assert traced.wait(30)
        assert not export_cache.COMPILING.is_set()
        release.set()
        chunk.programs[export_cache.signature((state,))].result()
        assert export_cache.COMPILING.is_set()
    finally:
        export_cache.COMPILING.set()  # as after any run: later imports need not wait
