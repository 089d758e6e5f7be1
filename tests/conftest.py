import atexit
import os
import shutil
import tempfile

# Tests never open windows and never touch the user's compilation cache: they share one cache
# of their own, made fresh for each test session (and shared by its xdist workers, which inherit
# this environment from the process that starts them). A program several tests build (the
# default CartPole chunk that many `reinforce` commands compile, say) is then compiled once,
# as it is for a user, whose cache is on by default. REINFORCE_JAX_CACHE=off tests without it.
os.environ.setdefault("MPLBACKEND", "Agg")
if os.environ.get("REINFORCE_JAX_CACHE") != "off":
    if "REINFORCE_JAX_TEST_CACHE" not in os.environ:  # the session's first process
        os.environ["REINFORCE_JAX_TEST_CACHE"] = tempfile.mkdtemp(prefix="reinforce-jax-tests-")
        atexit.register(shutil.rmtree, os.environ["REINFORCE_JAX_TEST_CACHE"], ignore_errors=True)
    os.environ["REINFORCE_JAX_CACHE"] = os.environ["REINFORCE_JAX_TEST_CACHE"]


def pytest_configure(config):
    # In-process tests use the cache too, not only those that go through `main` or `train`.
    from reinforce_jax.app.cli import enable_compilation_cache

    enable_compilation_cache()
