"""The compiled trainer: rollout, returns, loss, gradients and optax update in one XLA program.

Shaped after PureJaxRL's ``make_train``: :func:`make_compiled_program` returns pure functions;
``chunk(state)`` runs ``cfg.eval_every`` updates with ``lax.scan`` and then evaluates, all inside one
``jax.jit``. Python runs only between chunks (logging, checkpoints, the solve check). Seeds are a
leading ``vmap`` axis; with several devices that axis is sharded (``NamedSharding``), so the same
code runs on one CPU or several GPUs. With several processes (``jax.distributed``) each trains its
share of the seeds (:mod:`~reinforce_jax.trainers.distributed`) and every process sees all rows.
Between chunks the rows (seeds, or a sweep's configurations x seeds) wait on the host; each chunk
trains those still training in groups of :func:`group_size` rows, so that rows stopped at their
solve (``stop_when_solved``) cost nothing more.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from reinforce_jax.config import Config
from reinforce_jax.envs.functional import FunctionalEnv, spec_of
from reinforce_jax.envs.spec import EnvSpec
from reinforce_jax.errors import ConfigError
from reinforce_jax.evaluate import (
    PRECHECK_EPISODES,
    eval_row,
    make_jax_evaluate,
    precheck_total,
)
from reinforce_jax.learner import HYPERPARAMETERS, LearnerState
from reinforce_jax.networks import update_obs_stats
from reinforce_jax.rollout.functional import make_jax_rollout
from reinforce_jax.rollout.trajectory import episode_stats, to_batch
from reinforce_jax.system import usable_cores
from reinforce_jax.trainers.common import (
    RUN_ONCE,
    Agent,
    build_agent,
    init_learner,
    loop_options,
    prng_keys,
    sweep_rows,
)
from reinforce_jax.trainers.distributed import check_split, seed_split
from reinforce_jax.trainers.events import (
    Checkpoint,
    Done,
    EvalRows,
    Event,
    TrainRows,
    check_solved_at,
    flatten_state,
    restore_state,
    row_key,
)
from reinforce_jax.trainers.export_cache import COMPILING, cached_jit, program_key

# Settings that can be traced values, so that one program trains many configurations (a sweep).
TRACEABLE = (*HYPERPARAMETERS, "gamma")


class RunnerState(NamedTuple):
    learner: LearnerState
    key: jax.Array  # the run's PRNG key, split once per update and per evaluation
    env_steps: jax.Array  # environment steps taken so far (per seed)
    hyper: dict[str, jax.Array] = {}  # traced settings (TRACEABLE names); empty in a plain run


class CompiledProgram(NamedTuple):
    init: Callable[..., RunnerState]  # (keys[S], hyper {name: [S]}) -> state, jitted, over seeds
    chunk: Callable[[RunnerState], tuple[RunnerState, dict[str, Any]]]  # jitted, over seeds
    evaluate: Callable[..., jax.Array]  # (params, key) -> returns[eval_episodes]
    agent: Agent
    steps_per_update: int
    num_updates: int  # total, rounded up to whole chunks


def num_updates_for(cfg: Config) -> int:
    """Updates needed to spend ``total_steps``, rounded up to whole chunks of ``eval_every``."""
    per_update = cfg.num_envs * cfg.rollout_steps
    chunks = max(1, math.ceil(cfg.total_steps / (per_update * cfg.eval_every)))
    return chunks * cfg.eval_every


def make_compiled_program(
    cfg: Config,
    env: FunctionalEnv,
    traced: tuple[str, ...] = (),
    rows: int | None = None,
    precheck: float | None = None,
) -> CompiledProgram:
    """Pure functions for the compiled path of ``cfg`` on the JAX environment ``env``.

    ``traced`` names settings (of :data:`TRACEABLE`) that ``init`` takes as values per seed
    instead of reading them from ``cfg``: one program then trains every configuration that
    differs only in them. A plain run traces none (constants compile to the published numbers).
    ``rows``: the rows of every ``chunk`` call, when known. For one row the chunk skips the seed
    ``vmap`` (the same arrays, shaped ``[1, ...]``): tracing a vmapped scan costs a third of a
    one-seed start's tracing. Its numbers are its own, as those of any other batch shape are.

    ``precheck``: a solve threshold. Where the environment declares its ``max_return``, each
    evaluation then plays its first :data:`~reinforce_jax.evaluate.PRECHECK_EPISODES` episodes and the others only if
    those leave ``precheck`` within reach (:func:`~reinforce_jax.evaluate.precheck_total`) or
    the budget ends with this chunk; the chunk's ``eval_full`` says which rows played them all.
    The solve verdicts are those of whole evaluations; only the cost changes.
    """
    unknown = set(traced) - set(TRACEABLE)
    if unknown:
        raise ValueError(f"cannot trace {sorted(unknown)}; traceable: {TRACEABLE}")
    num_updates = num_updates_for(cfg)
    optimizer_traced = bool({"learning_rate", "max_grad_norm"} & set(traced))
    agent = build_agent(cfg, spec_of(env), num_updates, cfg.num_envs * cfg.rollout_steps,
                        traced=optimizer_traced)  # fmt: skip
    rollout = make_jax_rollout(env, agent.act, cfg.num_envs, cfg.rollout_steps, cfg.gamma,
                               agent.value)  # fmt: skip
    evaluate = make_jax_evaluate(env, agent.eval_act, cfg.eval_episodes)
    steps_per_update = cfg.num_envs * cfg.rollout_steps
    gate = _precheck(cfg, env, agent.eval_act, precheck)
    batched = rows != 1

    def init(key: jax.Array, hyper: dict[str, jax.Array] | None = None) -> RunnerState:
        hyper = dict(hyper or {})
        if set(hyper) != set(traced):
            raise ValueError(f"init needs values for exactly {traced}, got {sorted(hyper)}")
        key, init_key = jax.random.split(key)
        hyper = {k: jnp.asarray(v, jnp.float32) for k, v in hyper.items()}
        return RunnerState(init_learner(agent, init_key), key, jnp.zeros((), jnp.int32), hyper)

    def update(state: RunnerState, _: Any) -> tuple[RunnerState, dict[str, jax.Array]]:
        key, rollout_key = jax.random.split(state.key)
        gamma = state.hyper.get("gamma", cfg.gamma)
        traj = rollout(state.learner.params, rollout_key, gamma)
        learner = state.learner
        if cfg.obs_norm:  # statistics follow the experience before the update learns from it
            stats = update_obs_stats(learner.params["obs_norm"], traj.obs)
            learner = learner._replace(params={**learner.params, "obs_norm": stats})
        learner_hyper = {k: v for k, v in state.hyper.items() if k in HYPERPARAMETERS}
        learner, metrics = agent.learner.update(learner, to_batch(traj, gamma), learner_hyper)
        metrics.update(episode_stats(traj))
        env_steps = state.env_steps + steps_per_update
        metrics["env_steps"] = env_steps
        return RunnerState(learner, key, env_steps, state.hyper), metrics

    def train(state: RunnerState) -> tuple[RunnerState, dict[str, Any], jax.Array]:
        """A chunk's updates; also the key of its evaluation."""
        state, metrics = jax.lax.scan(update, state, None, length=cfg.eval_every)
        key, eval_key = jax.random.split(state.key)
        return state._replace(key=key), metrics, eval_key

    def over_rows(f: Callable[..., Any]) -> Callable[..., Any]:
        """``f`` over a leading axis of rows: ``vmap``, or for one row a plain call on it."""
        if batched:
            return jax.vmap(f)

        def one_row(*a: Any) -> Any:
            # A program made for one row must not take more and silently drop the others.
            if {x.shape[0] for x in jax.tree.leaves(a)} != {1}:
                raise ValueError("this chunk program trains one row a call (rows=1)")
            return jax.tree.map(lambda x: x[None], f(*jax.tree.map(lambda x: x[0], a)))

        return one_row

    def chunk_whole(state: RunnerState) -> tuple[RunnerState, dict[str, Any]]:
        def one(state: RunnerState) -> tuple[RunnerState, dict[str, Any]]:
            state, metrics, eval_key = train(state)
            metrics["eval_returns"] = evaluate(state.learner.params, eval_key)
            return state, metrics

        return over_rows(one)(state)

    def chunk_prechecked(state: RunnerState) -> tuple[RunnerState, dict[str, Any]]:
        # The rest of an evaluation runs (for the group) if any row needs it: a cond outside
        # the rows' vmap, which would otherwise run both branches.
        assert gate is not None
        first_part, rest_part = gate.parts
        state, metrics, eval_keys = over_rows(train)(state)
        params = state.learner.params
        first = over_rows(first_part)(params, eval_keys)
        full = (first.sum(-1) >= gate.total) | (state.learner.step >= num_updates)
        rest = jax.lax.cond(
            jnp.any(full),
            lambda: over_rows(rest_part)(params, eval_keys),
            lambda: jnp.full((first.shape[0], cfg.eval_episodes - first.shape[1]), jnp.nan),
        )
        metrics["eval_returns"] = jnp.concatenate([first, rest], axis=-1)
        metrics["eval_full"] = full
        return state, metrics

    # The export cache's key: the settings that shape both programs, and which are traced.
    key = {**program_key(cfg, env), "traced": list(traced)}
    chunk = cached_jit(chunk_whole if gate is None else chunk_prechecked, "chunk",
                       {**key, "batched": batched, "precheck": gate and gate.key},
                       donate_argnums=0, compiler_options=loop_options())  # fmt: skip
    return CompiledProgram(
        # init runs once: optimising its code costs more compile time (~0.6 s) than it saves.
        init=cached_jit(jax.vmap(init), "init", key, compiler_options=RUN_ONCE, feeds=chunk),
        chunk=chunk,
        evaluate=evaluate,
        agent=agent,
        steps_per_update=steps_per_update,
        num_updates=num_updates,
    )


class _Gate(NamedTuple):
    parts: tuple[Callable[..., jax.Array], Callable[..., jax.Array]]  # first episodes, the rest
    total: float  # the least total of the first episodes that keeps the threshold in reach
    key: list[float]  # what the program depends on (for the export cache)


def _precheck(cfg: Config, env: FunctionalEnv, act: Any, threshold: float | None) -> _Gate | None:
    """The pre-check of :func:`make_compiled_program`, or None where there is none to make: no
    threshold, no known ``max_return`` or too few episodes to split."""
    max_return = getattr(env, "max_return", None)
    episodes, first = cfg.eval_episodes, PRECHECK_EPISODES
    if threshold is None or max_return is None or episodes <= first:
        return None
    # float32 sums of the first returns may round below the exact total: a slack keeps the check
    # a necessary condition (a needless full evaluation costs time, never a verdict).
    total = precheck_total(episodes, first, threshold, max_return)
    total -= 1e-5 * max(1.0, abs(total))  # float32 sums of 20 returns err by < 1e-6 relative
    parts = (make_jax_evaluate(env, act, episodes, range(first)),
             make_jax_evaluate(env, act, episodes, range(first, episodes)))  # fmt: skip
    return _Gate(parts, total, [first, total])


def seed_keys(cfg: Config) -> jax.Array:
    """One PRNG key per seed: ``PRNGKey(seed + i)`` for ``i < num_seeds``."""
    return prng_keys(range(cfg.seed, cfg.seed + cfg.num_seeds))


def shard_seeds(tree: Any) -> Any:
    """Place the leading (seed) axis across this process's devices when it divides evenly; else
    leave as is.

    jit then partitions the whole vmapped program along that axis (GSPMD); each device trains its
    own seeds, so results equal the unsharded run's. With several processes each shards only its
    own share of the seeds (:func:`~reinforce_jax.trainers.distributed.seed_split`).
    """
    devices = jax.local_devices()
    leading = jax.tree.leaves(tree)[0].shape[0]
    if len(devices) < 2 or leading % len(devices):
        return tree
    mesh = Mesh(np.asarray(devices), ("seed",))
    sharding = NamedSharding(mesh, PartitionSpec("seed"))
    return jax.device_put(tree, sharding)


def check(cfg: Config, spec: EnvSpec) -> None:
    """Refuse what the compiled trainer cannot run (before anything is written)."""
    if spec.env_args:
        raise ConfigError(
            "the compiled trainer's JAX-native environments take no arguments "
            f"(got {spec.env_args}); the host trainer can use them"
        )
    if not spec.has_jax:
        raise ConfigError(
            f"{spec.env_id} has no JAX implementation, so the compiled trainer cannot run it; "
            "the host trainer can"
        )
    if cfg.return_lambda < 1.0:  # here, not only in build_trainer: sweeps build this directly
        raise ConfigError("return_lambda < 1 (TD(lambda) returns) is implemented by the envpool "
                          "and host trainers; this run uses the compiled trainer")  # fmt: skip
    check_split(cfg.num_seeds, jax.process_count())


class CompiledTrainer:
    """Runs :func:`make_compiled_program` chunk by chunk, yielding events."""

    name = "compiled"
    unit = "updates"
    log_style = "batched"
    curve_window = 5

    startup_note = "compiling the training program (seconds on first use; cached afterwards)"
    budget_rule = "whole chunks of eval_every updates of num_envs x rollout_steps steps"
    # Set once the chunk program is traced (it goes to XLA, which frees the GIL): the session's
    # background imports wait for it.
    tracing_done = COMPILING

    def __init__(
        self,
        cfg: Config,
        spec: EnvSpec,
        env: FunctionalEnv,
        *,
        rows: list[dict[str, Any]] | None = None,
        hyper: dict[str, list[float]] | None = None,
    ):
        """``rows``: one label per trained row (``{"seed": s}``, plus ``"config": c`` in a sweep;
        default: ``cfg``'s seeds); ``hyper``: per-row values of traced settings (a sweep)."""
        check(cfg, spec)
        self.cfg, self.spec = cfg, spec
        self.rows, self.hyper = sweep_rows(cfg, rows, hyper, TRACEABLE)
        # Under stop_when_solved the evaluations serve the solve check: they may stop early. Not
        # for one row: compiling the pre-check (~0.2 s) costs more than its short chunks save.
        prechecked = cfg.stop_when_solved and len(self.rows) > 1
        precheck = spec.solve_threshold if prechecked else None
        self.program = make_compiled_program(cfg, env, tuple(sorted(self.hyper)),
                                             rows=group_size(len(self.rows)),
                                             precheck=precheck)  # fmt: skip
        self.total = self.program.num_updates
        self.env_steps_budget = self.total * self.program.steps_per_update

    def check_resume(self, resume: Checkpoint) -> None:
        """Refuse a checkpoint whose bookkeeping this run cannot continue from."""
        chunks = self.total // self.cfg.eval_every
        if not isinstance(resume.evaluations, int) or not 0 <= resume.evaluations <= chunks:
            raise ConfigError(f"the checkpoint's position ({resume.evaluations!r} evaluations) "
                              f"is outside this run's 0..{chunks}")  # fmt: skip
        check_solved_at(resume.meta.get("solved_at", {}))

    def run(self, resume: Checkpoint | None = None) -> Iterator[Event]:
        """Train; ``resume`` continues exactly from a checkpoint this trainer yielded.

        A resumed run ends with the parameters an uninterrupted one would have had. Under
        ``stop_when_solved`` each row stops at its first solving evaluation, keeping the
        parameters that passed, and the rows still training are packed into fewer programs.
        """
        cfg, program = self.cfg, self.program
        threshold = self.spec.solve_threshold
        start = time.perf_counter()
        split = seed_split(len(self.rows))  # this process's rows (all, in a single process)
        labels = self.rows
        mine = labels[split.start : split.stop]
        size = group_size(len(labels))
        keys = prng_keys(r["seed"] for r in self.rows)
        hyper = {k: jnp.asarray(v, jnp.float32) for k, v in self.hyper.items()}
        init_args = (split.take(keys), split.take(hyper))
        # Rows live on the host between chunks (numpy, this process's rows); each chunk packs
        # the rows still training into groups of `size` (one compiled shape).
        state = _join([jax.device_get(program.init(*_rows(init_args, g)))
                       for g in _groups(range(len(mine)), size)], len(mine))  # fmt: skip
        first_chunk = 0
        solved_at: dict[str, dict[str, Any]] = {}
        if resume is not None:
            state = restore_state(state, split.take(resume.state))
            state = jax.tree.map(np.asarray, state)
            first_chunk = resume.evaluations
            solved_at = dict(resume.meta.get("solved_at", {}))
        all_solved = lambda: cfg.stop_when_solved and len(solved_at) == len(labels)  # noqa: E731
        training = lambda label: not (cfg.stop_when_solved and row_key(label) in solved_at)  # noqa: E731
        stop_reason = f"the budget of {self.env_steps_budget:,} env steps per seed is spent"
        per_update = program.steps_per_update
        metrics_type = None
        # A run killed after its last checkpoint but before it finished must not train on.
        chunks = (
            range(first_chunk, program.num_updates // cfg.eval_every) if not all_solved() else ()
        )
        # Groups run in threads, one per core: XLA runs a call on its caller's thread (one core
        # for these small kernels), so two calls at once take about the time of one.
        workers = _GroupRunner(program.chunk, min(usable_cores(), -(-len(mine) // size)))

        def launch() -> tuple[list[list[int]], list[Future]]:
            """Start a chunk on the rows still training; it runs while this thread logs."""
            groups = _groups([i for i, label in enumerate(mine) if training(label)], size)
            return groups, workers.submit([shard_seeds(_rows(state, g)) for g in groups])

        try:
            pending = launch() if chunks else None
            for chunk in chunks:
                assert pending is not None
                groups, futures = pending
                outputs = [f.result() for f in futures]
                if metrics_type is None:  # the per-row outputs' types, once
                    metrics_type = (
                        jax.tree.map(
                            lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), outputs[0][1]
                        )
                        if outputs  # else this process has no row left to train (several processes)
                        else jax.eval_shape(program.chunk.fun, _rows(state, [0] * size))[1]
                    )
                # Fresh arrays every chunk: events hand earlier ones to the session, which may
                # keep them.
                state = jax.tree.map(np.copy, state)
                metrics = _placeholder(metrics_type, len(mine))
                # A padded group's repeated rows computed the same numbers as the row they repeat.
                for g, (new_state, new_metrics) in zip(groups, outputs, strict=True):
                    _put(state, g, new_state)
                    _put(metrics, g, new_metrics)
                metrics = split.gather(metrics)
                state_all = split.gather(state)  # every row's state and bookkeeping, every process
                wall = time.perf_counter() - start
                eval_returns = np.asarray(metrics.pop("eval_returns"))  # [S, E]
                # Rows whose evaluation stopped at its pre-check played its first episodes only.
                full = np.asarray(metrics.pop("eval_full", np.ones(len(eval_returns), bool)))
                metrics.pop("env_steps")  # int32 on the device: counted here in Python ints instead
                steps = np.asarray(state_all.learner.step)
                now = [i for i, label in enumerate(labels) if training(label)]  # before this chunk
                rows = []
                for i in now:
                    for u in range(cfg.eval_every):
                        row = {k: v[i, u] for k, v in metrics.items()}
                        update = int(steps[i]) - cfg.eval_every + u + 1
                        row.update(labels[i], update=update, env_steps=update * per_update,
                                   wall_time=wall)  # fmt: skip
                        rows.append(row)
                evals = []
                for i in now:
                    updates = int(steps[i])
                    played = eval_returns[i] if full[i] else eval_returns[i, :PRECHECK_EPISODES]
                    row = eval_row(played, threshold, **labels[i], update=updates,
                                   env_steps=updates * per_update, wall_time=wall)  # fmt: skip
                    if not full[i]:  # its first episodes left the threshold out of reach
                        row.update(precheck=True, solved=False)
                    evals.append(row)
                    key = row_key(labels[i])
                    if row["solved"] and key not in solved_at:
                        solved_at[key] = row
                # The next chunk trains while the session writes this one's rows (its rows are
                # known now: the solve check is done). Stopping after a checkpoint drops it.
                pending = None if chunk == chunks[-1] or all_solved() else launch()
                yield TrainRows(rows)
                yield EvalRows(evals, state_all.learner.params)
                yield Checkpoint(chunk + 1, flatten_state(state_all), {"solved_at": solved_at})
                if all_solved():
                    break
        finally:
            workers.close()
        if all_solved():
            stop_reason = "every seed met the solve check (stop_when_solved)"
        state_all = split.gather(state)
        env_steps = int(np.max(np.asarray(state_all.learner.step))) * per_update
        yield Done(state_all.learner.params, env_steps, solved_at, stop_reason=stop_reason)


class _GroupRunner:
    """Calls ``program`` on each group's rows, up to ``workers`` calls at once; host results.

    A chunk call on the CPU runs on the thread that makes it and releases the GIL, so groups in
    threads use the cores that one call leaves idle. Each group's numbers are those of the same
    call made alone (one compiled program, independent inputs). The threads live until
    :meth:`close` (the end of a run, or its generator's close when it stops early)."""

    def __init__(self, program: Callable[..., Any], workers: int):
        self.program, self.workers = program, max(1, workers)
        self.pool: ThreadPoolExecutor | None = None
        self.prepared = False

    def _call(self, rows: Any) -> Any:
        return jax.device_get(self.program(rows))

    def submit(self, groups: list[Any]) -> list[Future]:
        """Start every group's call; the futures give the host results, in order."""
        if self.pool is None:
            self.pool = ThreadPoolExecutor(self.workers, "reinforce-jax-group")
        if self.prepared or not groups:
            return [self.pool.submit(self._call, g) for g in groups]
        # The first call prepares (compiles) the program, once: the others wait for it.
        self.prepared = True
        first = self.pool.submit(self._call, groups[0])

        def after_first(rows: Any) -> Any:
            first.result()
            return self._call(rows)

        return [first] + [self.pool.submit(after_first, g) for g in groups[1:]]

    def close(self) -> None:
        """Cancel the calls not started, wait for those under way, end the threads."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


GROUP_ROWS = 4  # the most rows of one compiled call on the CPU (see group_size)


def group_size(rows: int) -> int:
    """Rows per compiled call, rounded up to a multiple of the local devices (each group is
    sharded over them).

    On the CPU: at most :data:`GROUP_ROWS`, and half the rows where that is fewer, so that two
    groups at least run at once on two cores (:class:`_GroupRunner`). A row costs a little
    more in a small group, and the last seeds to solve train alone in a padded group, which small
    groups make cheap (CartPole, one core, a chunk per row: 15.6 ms alone, 12.3 ms in 2 rows,
    10.2 in 4, 9.5 in 8, 9.0 in 16; 64 seeds spend a third of their run in the last group).
    Accelerators take every row in one call: a wide batch costs them about what a narrow one does.

    A row's numbers depend on this size (XLA tiles reductions by the batch's shape) but not on
    its position or its neighbours (the tests check it), so one size for the whole run, whatever
    the number of processes and whichever rows still train, keeps every row's numbers its own:
    rows that stop at their solve leave the others' numbers unchanged, only faster.
    """
    cpu = jax.default_backend() == "cpu"
    size = min(GROUP_ROWS, math.ceil(rows / 2)) if cpu else rows
    devices = len(jax.local_devices())
    return max(1, math.ceil(size / devices)) * devices


def _groups(rows: Any, size: int) -> list[list[int]]:
    """``rows`` (indices) in groups of ``size``; the last group is padded with its last row."""
    rows = list(rows)
    out = [rows[i : i + size] for i in range(0, len(rows), size)]
    if out and len(out[-1]) < size:
        out[-1] = out[-1] + [out[-1][-1]] * (size - len(out[-1]))
    return out


def _rows(tree: Any, index: list[int]) -> Any:
    return jax.tree.map(lambda x: np.asarray(x)[np.asarray(index)], tree)


def _join(parts: list[Any], rows: int) -> Any:
    """Groups' host trees (padded) joined back into one tree of ``rows`` rows, in order."""
    return jax.tree.map(lambda *xs: np.concatenate(xs)[:rows], *parts)


def _put(tree: Any, index: list[int], values: Any) -> None:
    for dst, src in zip(jax.tree.leaves(tree), jax.tree.leaves(values), strict=True):
        dst[np.asarray(index)] = np.asarray(src)


def _placeholder(shapes: Any, rows: int) -> Any:
    """NaN-filled host arrays for the per-row outputs of a chunk (rows that did not train)."""

    def fill(s: jax.ShapeDtypeStruct) -> np.ndarray:
        a = np.zeros((rows, *s.shape[1:]), s.dtype)
        if np.issubdtype(s.dtype, np.floating):
            a[:] = np.nan
        return a

    return jax.tree.map(fill, shapes)


def build(cfg: Config, spec: EnvSpec) -> CompiledTrainer:
    from reinforce_jax.envs.registry import make_jax_env

    check(cfg, spec)
    return CompiledTrainer(cfg, spec, make_jax_env(spec.env_id))
