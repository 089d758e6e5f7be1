"""``jax.jit`` that also keeps the traced and lowered program between processes (``jax.export``).

JAX's persistent compilation cache skips only XLA's compile: every process still traces and lowers
the training program (about 1.5 s of a CartPole start). :func:`cached_jit` serialises the lowered
program with ``jax.export`` on first use and, in later processes, deserialises it instead of
tracing. Programs are always called through the exported form, so a cold and a warm process run the
same StableHLO (and share JAX's compile-cache entry); the numbers equal plain ``jax.jit``'s.

Files are written only where the application pointed the cache (:func:`set_directory`, called by
``enable_compilation_cache`` beside JAX's own cache); with no directory, or more than one device
(sharded seeds), this is plain ``jax.jit``. Each file is keyed by everything that determines its
program: the caller's key (settings that enter the program), the arguments' tree and types, the
package version and a hash of its source, JAX and jaxlib versions, the backend and devices, and
the JAX flags that change tracing. A file holds a SHA-256 of its payload, checked before
deserialising; ``jax.export``'s bytes are data (StableHLO and a flatbuffer), never pickle. Any
error falls back to plain ``jax.jit``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import jax

log = logging.getLogger(__name__)

FORMAT = b"reinforce-jax-export-1\n"  # first line of every file (see load_or_export)
_directory: Path | None = None
# Set once a program that feeds no other goes to XLA (or to plain jit): its tracing and lowering,
# which hold the GIL, are over. Background imports wait for it (app.session.preload_in_background).
COMPILING = threading.Event()


def set_directory(path: str | Path | None) -> None:
    """Keep exported programs in ``path`` (created on first write); ``None`` turns the cache off."""
    global _directory
    _directory = None if path is None else Path(path)


def directory() -> Path | None:
    """Where exported programs are kept, or None (plain jit)."""
    return _directory


@functools.cache
def source_hash() -> str:
    """SHA-256 over the package's Python source: any code change makes new programs."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _environment() -> dict[str, Any]:
    import jaxlib

    from reinforce_jax import __version__

    device = jax.devices()[0]
    flags = ("jax_enable_x64", "jax_default_prng_impl", "jax_threefry_partitionable",
             "jax_default_matmul_precision", "jax_numpy_dtype_promotion")  # fmt: skip
    return {
        "package": __version__,
        "source": source_hash(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "backend": [device.platform, getattr(device.client, "platform_version", "")],
        "devices": [[d.platform, d.device_kind] for d in jax.devices()],
        "flags": {f: str(getattr(jax.config, f, None)) for f in flags},
    }


def _type(x: Any) -> tuple[tuple[int, ...], str, bool]:
    a = x if isinstance(x, jax.ShapeDtypeStruct) else jax.typeof(x)
    return tuple(a.shape), str(a.dtype), bool(a.weak_type)


def _abstract(args: Sequence[Any]) -> Any:
    """``args`` as ``jax.ShapeDtypeStruct`` leaves (shape, dtype, weak type; no placement)."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(*_type(x)[:2], weak_type=_type(x)[2]),
                        tuple(args))  # fmt: skip


def signature(args: Sequence[Any]) -> str:
    """The arguments' tree and abstract types (shape, dtype, weak type): what jit retraces on.
    Arrays and ``jax.ShapeDtypeStruct`` of the same type give the same signature."""
    leaves, tree = jax.tree.flatten(tuple(args))
    return json.dumps([str(tree), [_type(x) for x in leaves]])


def cache_key(name: str, key: Any, args: Sequence[Any], donate_argnums: tuple[int, ...],
              compiler_options: dict[str, Any] | None) -> str:  # fmt: skip
    """The file name stem for ``name``'s program on ``args``: ``name-<sha256>``."""
    parts = {"name": name, "key": key, "args": signature(args), "donate": list(donate_argnums),
             "compiler_options": sorted((compiler_options or {}).items()),
             "environment": _environment()}  # fmt: skip
    text = json.dumps(parts, sort_keys=True, default=repr)
    return f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:32]}"


def _read(path: Path) -> bytes | None:
    """The payload of a complete, uncorrupted file, else None."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    n = len(FORMAT)
    if data[:n] != FORMAT or data[n + 64 : n + 65] != b"\n":
        return None
    payload = data[n + 65 :]
    return payload if hashlib.sha256(payload).hexdigest().encode() == data[n : n + 64] else None


def _write(path: Path, payload: bytes) -> None:
    """Temp file then rename: a reader sees the whole file or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = FORMAT + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _tree_types(tree: Any) -> set[type]:
    """The node types of a treedef (NamedTuples such as optax's states, dicts, tuples...)."""
    found, stack = set(), [tree]
    while stack:
        node = stack.pop()
        data = node.node_data()
        if data is not None:
            found.add(data[0])
        stack.extend(node.children())
    return found


def _register(cls: type) -> str:
    """Make a NamedTuple type serialisable by ``jax.export`` (once per process); its name."""
    name = f"{cls.__module__}:{cls.__qualname__}"
    try:
        jax.export.register_namedtuple_serialization(cls, serialized_name=name)
    except ValueError:  # registered already (by us, earlier in this process)
        pass
    return name


def _named_tuple(name: str) -> type:
    """A NamedTuple class by ``module:qualname``, looked up among modules already imported: a
    cache file never makes us import anything."""
    module, _, qualname = name.partition(":")
    obj: Any = sys.modules[module]
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, tuple) and hasattr(obj, "_fields")):
        raise TypeError(f"{name} is not a NamedTuple")
    return obj


def _is_named_tuple(cls: type) -> bool:
    return issubclass(cls, tuple) and cls is not tuple and hasattr(cls, "_fields")


def load_or_export(fun: Callable[..., Any], path: Path, args: Sequence[Any],
                   custom_calls: Sequence[str] = ()) -> jax.export.Exported:  # fmt: skip
    """The exported program in ``path`` if it matches ``args``; else export ``fun`` and store it.
    ``custom_calls``: FFI targets ``fun`` may call besides JAX's own (registered before use).

    A file is ``FORMAT``, the SHA-256 of the rest, a JSON line naming the NamedTuple types its
    trees hold (registered for deserialisation first), and ``Exported.serialize()``'s bytes.
    """
    payload = _read(path)
    if payload is not None:
        try:
            names, _, blob = payload.partition(b"\n")
            for name in json.loads(names):
                _register(_named_tuple(name))
            exported = jax.export.deserialize(bytearray(blob))
            types = [_type(x)[:2] for x in jax.tree.leaves(args)]
            same_types = [(tuple(a.shape), str(a.dtype)) for a in exported.in_avals] == types
            if exported.in_tree == jax.tree.structure((tuple(args), {})) and same_types:
                return exported
        except Exception as e:  # a file from another version, or damaged: export anew
            log.debug("ignoring exported program %s: %s", path, e)
    checks = [jax.export.DisabledSafetyCheck.custom_call(name) for name in custom_calls]
    exported = jax.export.export(jax.jit(fun), disabled_checks=checks)(*args)
    trees = _tree_types(exported.in_tree) | _tree_types(exported.out_tree)
    names = sorted(_register(t) for t in trees if _is_named_tuple(t))
    blob = bytes(exported.serialize())
    try:
        _write(path, json.dumps(names).encode() + b"\n" + blob)
    except OSError as e:  # a read-only or full disk costs only tracing next time
        log.debug("cannot store exported program %s: %s", path, e)
    return exported


_lapack_lock = threading.Lock()


@contextlib.contextmanager
def _without_lapack(exported: jax.export.Exported) -> Iterator[None]:
    """Calling an exported CPU program initialises LAPACK, which imports scipy.linalg (0.3 s of a
    warm start); a program without LAPACK calls needs none of it (plain jit would not do it). If
    JAX's internals differ, nothing is skipped; a wrongly skipped LAPACK would fail the compile
    and fall back to jit."""
    from jax._src.lax import linalg

    if b"lapack" in exported.mlir_module_serialized or not hasattr(linalg, "initialize_lapack"):
        yield
        return
    with _lapack_lock:  # two programs lowering at once must restore the real function
        initialize = linalg.initialize_lapack
        linalg.initialize_lapack = lambda: None
        try:
            yield
        finally:
            linalg.initialize_lapack = initialize


class CachedJit:
    """A ``jax.jit(fun, donate_argnums, compiler_options)`` whose traced program outlives the
    process (see the module's docstring). Call it as the jitted function.

    ``feeds``: the program that takes this one's output as its only argument (the compiled
    trainer's init feeds its chunk). On a cold start, once this program's output types are known
    (from its export, before XLA compiles it), that one is prepared in a thread: its tracing
    overlaps this one's XLA compile, and both compile at once.

    ``custom_calls``: FFI targets the program calls (see :func:`load_or_export`). ``signal``: the
    event set once this program's tracing is over (default :data:`COMPILING`).
    """

    def __init__(self, fun: Callable[..., Any], name: str, key: Any, *,
                 donate_argnums: int | tuple[int, ...] = (),
                 compiler_options: dict[str, Any] | None = None,
                 feeds: CachedJit | None = None, custom_calls: Sequence[str] = (),
                 signal: threading.Event = COMPILING):  # fmt: skip
        self.fun, self.name, self.key, self.feeds = fun, name, key, feeds
        self.custom_calls, self.signal = tuple(custom_calls), signal
        self.donate_argnums = (
            (donate_argnums,) if isinstance(donate_argnums, int) else tuple(donate_argnums)
        )
        self.compiler_options = compiler_options
        self.plain = jax.jit(fun, donate_argnums=self.donate_argnums,
                             compiler_options=compiler_options)  # fmt: skip
        self.programs: dict[str, Future] = {}  # signature -> the compiled program, once ready

    def __call__(self, *args: Any) -> Any:
        if _directory is None or len(jax.devices()) != 1:
            if self.feeds is None:
                self.signal.set()
            return self.plain(*args)
        sig = signature(args)
        if sig not in self.programs:
            self.programs[sig] = Future()
            self.programs[sig].set_result(self._prepare(_directory, args))
        return self.programs[sig].result()(*args)

    def lower(self, *args: Any) -> Any:
        """Plain ``jax.jit``'s lowering (``.compile()`` it for an ahead-of-time program)."""
        return self.plain.lower(*args)

    def prepare_in_background(self, where: Path, args: Sequence[Any]) -> None:
        """Start preparing the program for ``args`` (``jax.ShapeDtypeStruct`` leaves) in a thread.

        Only where the program is not stored yet (a cold start): reading JAX's compilation cache
        in two threads at once was no faster than one after the other. Not a daemon: a process
        never exits while XLA compiles in it."""
        sig = signature(args)
        stem = cache_key(self.name, self.key, args, self.donate_argnums, self.compiler_options)
        if sig in self.programs or (where / f"{stem}.jaxexport").exists():
            return
        future = self.programs[sig] = Future()

        def work() -> None:
            try:
                future.set_result(self._prepare(where, args))
            except BaseException:
                future.set_result(self.plain)

        threading.Thread(target=work, name=f"reinforce-jax-{self.name}").start()

    def _prepare(self, where: Path, args: Sequence[Any]) -> Callable[..., Any]:
        try:
            stem = cache_key(self.name, self.key, args, self.donate_argnums, self.compiler_options)
            path = where / f"{stem}.jaxexport"
            cold = not path.exists()
            if self.feeds is not None and cold:
                # The fed program's tracing (the longer one) starts from this one's output
                # types, a quick trace, rather than after this one's export.
                self.feeds.prepare_in_background(where, (jax.eval_shape(self.fun, *args),))
            exported = load_or_export(self.fun, path, args, self.custom_calls)
            if self.feeds is not None and not cold:  # the types from the stored program
                avals = [jax.ShapeDtypeStruct(a.shape, a.dtype, weak_type=a.weak_type)
                         for a in exported.out_avals]  # fmt: skip
                self.feeds.prepare_in_background(
                    where, (jax.tree.unflatten(exported.out_tree, avals),)
                )

            def program(*a: Any) -> Any:
                return exported.call(*a)

            program.__name__ = self.name  # names JAX's compile-cache entry
            jitted = jax.jit(program, donate_argnums=self.donate_argnums,
                             compiler_options=self.compiler_options)  # fmt: skip
            # Lowered and compiled here, before any buffer is donated: a failure can fall back.
            # From types alone, so that a program prepared ahead (feeds) and one prepared at its
            # call lower to the same module and share JAX's compile-cache entry.
            with _without_lapack(exported):
                lowered = jitted.lower(*_abstract(args))
            if self.feeds is None:
                self.signal.set()
            return lowered.compile()
        except Exception as e:
            log.debug("exported program %s unusable, using jax.jit: %s", self.name, e)
            self.signal.set()
            return self.plain


def cached_jit(fun: Callable[..., Any], name: str, key: Any, *,
               donate_argnums: int | tuple[int, ...] = (),
               compiler_options: dict[str, Any] | None = None,
               feeds: CachedJit | None = None, custom_calls: Sequence[str] = (),
               signal: threading.Event = COMPILING) -> CachedJit:  # fmt: skip
    """``jax.jit`` whose program is kept in the export cache; ``key`` is JSON-able and must hold
    every setting that shapes ``fun`` but is not in its arguments' types. See :class:`CachedJit`
    for ``feeds``, ``custom_calls`` and ``signal``."""
    return CachedJit(fun, name, key, donate_argnums=donate_argnums,
                     compiler_options=compiler_options, feeds=feeds,
                     custom_calls=custom_calls, signal=signal)  # fmt: skip


# Config fields that never enter a compiled program: runs differing only in these share one.
NOT_IN_PROGRAM = frozenset({"seed", "stop_when_solved", "checkpoint_every", "preset", "trainer"})


def program_key(cfg: Any, env: Any) -> dict[str, Any]:
    """The settings that shape a trainer's programs: the config (less :data:`NOT_IN_PROGRAM`;
    ``num_seeds`` is in the arguments' shapes too) and the environment's class."""
    settings = {k: v for k, v in cfg.to_dict().items() if k not in NOT_IN_PROGRAM}
    return {"config": settings, "env": [type(env).__module__, type(env).__qualname__]}
