"""envpool's XLA calls made cacheable: the pool travels as an operand, not as an attribute.

envpool's ``pool.xla()`` names its pool twice in every compiled call: in the FFI target
(``LunarLanderDiscreteGymnasiumEnvPool_<id>_send``) and in a ``handle`` attribute holding the
pool's address. So no two processes lower the same program, JAX's persistent compilation cache
never hits, and every envpool run compiles its chunk again (3.8-4.1 s of a LunarLander run on the
2-core machine).

:func:`xla` returns the same four functions as ``pool.xla()``, but each call goes to one fixed
target, a small C handler (``envpool_route.c``), whose first operand is a 24-byte *route*: the
pool's handle and the addresses of envpool's ``send`` and ``recv`` handlers. The handler calls
envpool's own handler with the call frame envpool expects (its 8-byte handle operand, the
``handle`` attribute). The addresses are data, passed into the program at run time, so its text
is the same in every process and the cache serves it.

The handler is compiled once per machine with the system's C compiler (``$CC`` or ``cc``), against
the FFI headers jaxlib ships, into the cache directory. Where that cannot be done (no compiler, a
non-CPU backend, ``REINFORCE_JAX_NATIVE=off``) :func:`xla` is envpool's own and
:func:`unavailable` says why; training is the same, only the compile is paid on every run.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

TARGET = "reinforce_jax_envpool_route"
SOURCE = Path(__file__).with_name("envpool_route.c")
ROUTE_BYTES = 24  # three 64-bit words: the pool's handle, envpool's send and recv handlers
_WORDS = {"send": 1, "recv": 2}


def _native_dir() -> Path:
    """Where the handler is built: beside JAX's cache (``REINFORCE_JAX_CACHE``, as the CLI uses
    it) or in the user's cache directory; a fresh temporary directory when the cache is off."""
    where = os.environ.get("REINFORCE_JAX_CACHE")
    if where == "off":  # removed at exit (a loaded library needs no file)
        path = tempfile.mkdtemp(prefix="reinforce-jax-native-")
        atexit.register(shutil.rmtree, path, ignore_errors=True)
        return Path(path)
    if where:
        return Path(where) / "native"
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "reinforce-jax" / "native"


def _compiler() -> str | None:
    for name in (os.environ.get("CC", "").split() or [None])[:1] + ["cc", "gcc", "clang"]:
        if name and (path := shutil.which(name)):
            return path
    return None


def _build() -> Path:
    """The handler's shared library, compiled at most once per (source, jaxlib, compiler);
    raises ``RuntimeError`` with the reason when it cannot be."""
    import jax.ffi
    import jaxlib

    compiler = _compiler()
    if compiler is None:
        raise RuntimeError("no C compiler (cc) on PATH")
    source = SOURCE.read_bytes()
    parts = [source, jaxlib.__version__.encode(), compiler.encode(), sys.platform.encode()]
    key = hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]
    directory = _native_dir()
    library = directory / f"envpool-route-{key}.so"
    if library.exists():
        return library
    directory.mkdir(parents=True, exist_ok=True)
    # Built beside its final name, then renamed: processes building at once each rename a
    # whole library, and none loads a half-written one.
    fd, tmp = tempfile.mkstemp(prefix=library.name, suffix=".tmp", dir=directory)
    os.close(fd)
    command = [compiler, "-O2", "-shared", "-fPIC", "-I", jax.ffi.include_dir(), "-o", tmp,
               str(SOURCE)]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"{Path(compiler).name} failed: {last}")
        os.replace(tmp, library)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return library


@functools.cache
def _registered() -> str | None:
    """Builds, loads and registers the handler with XLA (once per process); ``None`` when done,
    else the reason it cannot be used here."""
    if os.environ.get("REINFORCE_JAX_NATIVE") == "off":
        return "REINFORCE_JAX_NATIVE=off"
    import jax

    if jax.default_backend() != "cpu":
        return f"the route reads its operand on the host; this backend is {jax.default_backend()}"
    try:
        library = ctypes.CDLL(str(_build()))
    except (OSError, RuntimeError, subprocess.SubprocessError) as error:
        return str(error)
    jax.ffi.register_ffi_target(TARGET, jax.ffi.pycapsule(library.reinforce_jax_envpool_route),
                                platform="cpu", api_version=1)  # fmt: skip
    return None


def unavailable() -> str | None:
    """Why :func:`xla` falls back to envpool's own functions here (``None``: it does not)."""
    return _registered()


_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_capsule_name = ctypes.pythonapi.PyCapsule_GetName
_capsule_name.restype = ctypes.c_char_p
_capsule_name.argtypes = [ctypes.py_object]


def _routed_call(specs: tuple[Any, Any], word: int) -> Any:
    import jax
    from jax import dtypes

    def shapes(given):
        out = [(tuple(shape), dtypes.canonicalize_dtype(dtype)) for dtype, shape in given]
        out[0] = ((ROUTE_BYTES,), np.dtype(np.uint8))  # envpool's handle, widened to the route
        return out

    ins, outs = (shapes(s) for s in specs)
    results = tuple(jax.ShapeDtypeStruct(shape, dtype) for shape, dtype in outs)
    call = jax.ffi.ffi_call(
        TARGET,
        results if len(results) > 1 else results[0],
        has_side_effect=True,
        input_layouts=tuple(tuple(range(len(shape))) for shape, _ in ins),
        output_layouts=tuple(tuple(range(len(shape))) for shape, _ in outs)
        if len(outs) > 1 else tuple(range(len(outs[0][0]))),
        input_output_aliases={0: 0},
    )  # fmt: skip
    # `handle` is rewritten by the handler with the pool's address from the route.
    return lambda *args: call(*args, handle=0, word=word)


def xla(pool: Any) -> tuple[np.ndarray, Any, Any, Any]:
    """``(handle, recv, send, step)`` for ``pool``, as envpool's ``pool.xla()`` gives them, with
    calls that name no address when the handler is available (else envpool's own)."""
    if _registered() is not None:
        return pool.xla()
    parts = {name: rest for name, rest in pool._xla()}
    handle = parts["send"][0]
    if set(parts) != set(_WORDS) or parts["recv"][0] != handle or len(handle) != 8:
        return pool.xla()  # an envpool whose calls this handler does not know
    route = bytearray(handle)
    calls = {}
    for name, word in _WORDS.items():
        _, specs, (cpu_capsule, _gpu) = parts[name]
        address = _capsule_pointer(cpu_capsule, _capsule_name(cpu_capsule))
        route += int(address).to_bytes(8, sys.byteorder)
        calls[name] = _routed_call(specs, word)

    # As envpool's own (envpool/python/lax.py): the action dict or array in, a step's tuple out.
    def send(handle: Any, action: Any, env_id: Any = None) -> Any:
        action = pool._from(action, env_id)
        pool._check_action(action)
        return calls["send"](handle, *action)

    def recv(handle: Any) -> Any:
        out = calls["recv"](handle)
        return out[0], pool._to(out[1:], reset=False, return_info=True)

    def step(handle: Any, action: Any, env_id: Any = None) -> Any:
        return recv(send(handle, action, env_id))

    return np.frombuffer(bytes(route), np.uint8), recv, send, step


__all__ = ["ROUTE_BYTES", "TARGET", "unavailable", "xla"]
