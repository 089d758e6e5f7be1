"""envpool's XLA calls through the route handler (``envs/envpool_route``): the same numbers as
envpool's own calls, a program text that names no pool (so JAX's persistent cache serves another
process), and the fallback when the handler cannot be built."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reinforce_jax.envs import env_spec
from reinforce_jax.envs import envpool as pools
from reinforce_jax.envs import envpool_route as route

needs_route = pytest.mark.skipif(
    not pools.available() or route._compiler() is None,
    reason="needs envpool and a C compiler (to build the route handler)",
)


def _program(step, num_envs, steps, discrete):
    def run(handle, key):
        def body(h, k):
            if discrete:
                a = jax.random.randint(k, (num_envs,), 0, 4, jnp.int32)
            else:
                a = jax.random.uniform(k, (num_envs, 2), jnp.float32, -1.0, 1.0)
            h, (obs, reward, terminated, truncated, info) = step(h, a)
            return h, (obs, reward, terminated, truncated, info["env_id"])

        return jax.lax.scan(body, handle, jax.random.split(key, steps))

    return jax.jit(run)


@needs_route
@pytest.mark.parametrize("env_id", ["LunarLander-v3", "LunarLanderContinuous-v3", "CartPole-v1"])
def test_routed_calls_step_the_pool_as_envpools_own_do(env_id):
    assert route.unavailable() is None
    spec = env_spec(env_id)
    discrete = env_id != "LunarLanderContinuous-v3"
    if env_id == "CartPole-v1":
        step_count, n = 300, 3
    else:
        step_count, n = 400, 5
    got = {}
    for name, make in (("own", lambda p: p.xla()), ("routed", route.xla)):
        pool = pools.make_pool(spec, n, seed=11, num_threads=1)
        handle, _, _, step = make(pool)
        first, _ = pool.reset()
        program = _program(step, n, step_count, discrete)
        new_handle, out = program(handle, jax.random.PRNGKey(3))
        got[name] = (first, *map(np.asarray, out))
        if name == "routed":  # the route comes back unchanged: the pool's handle, then handlers
            assert new_handle.shape == (route.ROUTE_BYTES,)
            np.testing.assert_array_equal(np.asarray(new_handle), handle)
        pool.close()
    own, routed = got["own"], got["routed"]
    assert own[3].any() or own[4].any(), "some episode ends, so resets are compared too"
    for a, b in zip(own, routed, strict=True):
        np.testing.assert_array_equal(a, b)


@needs_route
def test_a_routed_program_names_no_pool():
    spec = env_spec("CartPole-v1")
    texts = {"own": [], "routed": []}
    pools_made = []
    for _ in range(2):
        pool = pools.make_pool(spec, 2, seed=0, num_threads=1)
        pools_made.append(pool)
        for name, make in (("own", lambda p: p.xla()), ("routed", route.xla)):
            handle, _, _, step = make(pool)
            program = _program(step, 2, 3, True)
            texts[name].append(program.lower(handle, jax.random.PRNGKey(0)).as_text())
    for pool in pools_made:
        pool.close()
    assert texts["own"][0] != texts["own"][1]  # envpool's calls name the pool: no cache hit
    assert texts["routed"][0] == texts["routed"][1]
    assert route.TARGET in texts["routed"][0] and "EnvPool_" not in texts["routed"][0]


_CHILD = textwrap.dedent(
    """
    import json, logging, sys
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_compilation_cache_dir", sys.argv[1])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    from reinforce_jax.envs import env_spec, envpool as pools, envpool_route as route
    hits = []
    class Hits(logging.Handler):
        def emit(self, record):
            hits.append("cache hit" in record.getMessage().lower())
    logging.getLogger("jax._src.compiler").addHandler(Hits())
    logging.getLogger("jax._src.compiler").setLevel(logging.DEBUG)
    pool = pools.make_pool(env_spec("LunarLander-v3"), 3, seed=4, num_threads=1)
    handle, _, _, step = route.xla(pool)
    pool.reset()
    def run(h):
        def body(h, _):
            h, (obs, r, term, trunc, info) = step(h, jnp.ones((3,), jnp.int32))
            return h, r
        return jax.lax.scan(body, h, None, length=50)
    _, rewards = jax.jit(run)(handle)
    print(json.dumps({"hit": any(hits), "rewards": np.asarray(rewards).tolist()}))
    """
)


@needs_route
def test_a_routed_program_is_served_from_the_cache_in_another_process(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    runs = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path / "jax")], env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert not runs[0]["hit"] and runs[1]["hit"]
    assert runs[0]["rewards"] == runs[1]["rewards"]  # the cached program steps the new pool


def test_without_a_compiler_the_route_is_unavailable_and_says_why(monkeypatch):
    monkeypatch.setattr(route, "_compiler", lambda: None)
    with pytest.raises(RuntimeError, match="no C compiler"):
        route._build()
    assert route._registered.__wrapped__() == "no C compiler (cc) on PATH"
    monkeypatch.setenv("REINFORCE_JAX_NATIVE", "off")
    assert route._registered.__wrapped__() == "REINFORCE_JAX_NATIVE=off"


def test_a_failed_build_leaves_no_library(monkeypatch, tmp_path):
    bad = tmp_path / "bad.c"
    bad.write_text("this is not C\n")
    monkeypatch.setattr(route, "SOURCE", bad)
    monkeypatch.setenv("REINFORCE_JAX_CACHE", str(tmp_path / "cache"))
    if route._compiler() is None:
        pytest.skip("no C compiler")
    with pytest.raises(RuntimeError, match="failed"):
        route._build()
    assert list((tmp_path / "cache" / "native").iterdir()) == []
