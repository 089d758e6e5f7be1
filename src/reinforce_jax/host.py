r"""The host trainer: gymnasium environments stepped on the host, the one learner jitted.

Any discrete-action gymnasium environment trains here. A :class:`HostRollout` steps a gymnasium
``SyncVectorEnv`` (same-step autoreset, no render mode) with the policy jitted over the batch of
environments; the update is the very learner of the compiled path (:func:`make_learner`) fed by the
same returns maths (:class:`Rollout`, :func:`to_batch`, ``batched_discounted_returns``).

``SyncVectorEnv`` rather than ``AsyncVectorEnv``: on the 2-core reference machine LunarLander-v3
steps at about 24-27k steps/s synchronously and 6.5-7.7k steps/s with subprocesses (pipe and pickle
costs exceed the ~35 us a step costs); ``benchmarks/lunarlander.py`` measures both.

Episodes and windows. An update sees ``rollout_steps`` new steps of each of ``num_envs``
environments. Every step's return is Monte-Carlo over its *complete* episode: the unfinished tail of
an episode that the window cut is carried over (:class:`EpisodeAssembler`) and learned from in the
window where it ends, never treated as ended. Time-limit truncation is the one cut that ends an
episode; as in :func:`reinforce_jax.rollout.make_jax_rollout`, with ``baseline = "value"`` the
truncated step's reward gains :math:`\gamma V(s_T)` of the final observation, otherwise the return
stops there. The learner's batch packs complete episodes one after another into a fixed shape
(padding masked out), so there is one compilation.

Observation normalisation (``cfg.obs_norm``): a running mean and variance updated on the host after
every window; the networks see :math:`\mathrm{clip}((o - \mu) / \sqrt{\sigma^2 + 10^{-8}}, \pm 10)`.
The statistics are not trained: they live outside the learner state and are saved with the
parameters as ``params["obs_norm"] = {"mean", "var", "count"}``.

Seeding: every random number derives from ``cfg.seed`` (environment seeds through
``numpy.random.SeedSequence``, JAX keys from ``PRNGKey(cfg.seed)``), so a run repeats exactly.
Evaluation episode ``k`` resets with seed ``base + k``: greedy evaluation of fixed parameters gives
fixed returns whatever the number of evaluation environments.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from importlib import resources
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from reinforce_jax import math as rl
from reinforce_jax.config import Config, ConfigError, from_dict, validate
from reinforce_jax.envs import EnvInfo, env_info, make_gym_env
from reinforce_jax.learner import LearnerState, make_learner
from reinforce_jax.policy import Networks, make_networks
from reinforce_jax.rollout import Rollout, to_batch
from reinforce_jax.trainer import flatten_state, restore_state

EVAL_ENVS = 25  # at most this many evaluation environments (100 episodes: 4 each)


# --- observation normalisation -------------------------------------------------------------------
class RunningMeanStd:
    """Running mean and (population) variance of observations, merged batch by batch (Chan et al.)."""

    def __init__(self, shape: tuple[int, ...]):
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = 1e-4  # a tiny prior weight keeps the first merge well defined

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float64).reshape((-1, *self.mean.shape))
        b_mean, b_var, b = x.mean(0), x.var(0), x.shape[0]
        delta, total = b_mean - self.mean, self.count + b
        m2 = self.var * self.count + b_var * b + np.square(delta) * self.count * b / total
        self.mean = self.mean + delta * b / total
        self.var = m2 / total
        self.count = total

    def exact(self) -> dict[str, np.ndarray]:
        """Full-precision statistics, for checkpoints."""
        return {"mean": self.mean, "var": self.var, "count": np.asarray(self.count, np.float64)}

    def load(self, saved: dict[str, Any]) -> None:
        self.mean = np.asarray(saved["mean"], np.float64)
        self.var = np.asarray(saved["var"], np.float64)
        self.count = float(saved["count"])

    def state(self) -> dict[str, np.ndarray]:
        return {
            "mean": self.mean.astype(np.float32),
            "var": self.var.astype(np.float32),
            "count": np.asarray(self.count, np.float32),
        }


def normalize_obs(norm: dict[str, Any] | None, obs: jax.Array) -> jax.Array:
    r""":math:`\mathrm{clip}((o - \mu) / \sqrt{\sigma^2 + 10^{-8}}, -10, 10)`; identity if ``norm`` is None."""
    obs = jnp.asarray(obs, jnp.float32)
    if norm is None:
        return obs
    return jnp.clip((obs - norm["mean"]) / jnp.sqrt(norm["var"] + 1e-8), -10.0, 10.0)


# --- jitted policy and update --------------------------------------------------------------------
def make_act(networks: Networks, greedy: bool) -> Callable:
    """``act(policy_params, norm, obs[B], key) -> (actions[B], key)``, jitted (one call per step)."""

    def act(policy_params: Any, norm: Any, obs: jax.Array, key: jax.Array):
        logits = networks.policy.apply(policy_params, normalize_obs(norm, obs))
        if greedy:
            return rl.greedy_action(logits), key
        key, sub = jax.random.split(key)
        return rl.sample_action(sub, logits), key

    return jax.jit(act)


def make_host_update(learner_update: Callable, gamma: float) -> Callable:
    """``update(state, norm, obs, actions, rewards, ends)`` on ``[T, N]`` arrays, jitted.

    The arrays form a :class:`Rollout`; :func:`to_batch` gives reward-to-go and the completeness mask
    (steps of episodes that do not end inside the arrays, and padding, weigh 0).
    """

    def update(state: LearnerState, norm: Any, obs, actions, rewards, ends):
        zeros = jnp.zeros(rewards.shape, jnp.float32)
        rollout = Rollout(normalize_obs(norm, obs), actions, rewards, ends, zeros, zeros)
        batch = to_batch(rollout, gamma)
        state, metrics = learner_update(state, batch)
        metrics["learn_steps"] = jnp.sum(batch.mask)
        return state, metrics

    return jax.jit(update, donate_argnums=0)


# --- episode assembly across update windows ------------------------------------------------------
class EpisodeAssembler:
    """Turns update windows into the learner's fixed-shape batch of *complete* episodes.

    :meth:`assemble` takes a window ``[W, N]`` (observations, actions, rewards to learn from,
    episode ends). Per environment, the steps carried from earlier windows and the window's steps
    are split at the episode ends: every complete episode joins a FIFO queue, and the unfinished
    tail is carried to the next call (never treated as ended). Queued episodes are then packed, whole
    and oldest first, one after another into ``[capacity, 1]`` time-major arrays; the rest of the
    arrays is padding (reward 0, no end), which ``to_batch`` masks out together with nothing else.
    An episode that does not fit waits for the next update (``queued`` steps), so the shape never
    changes. ``capacity`` defaults to ``max(2 N W, carry_cap + W)``: twice the average inflow, and
    at least the longest episode that can be stored.

    A tail longer than ``carry_cap`` (only possible for episodes longer than ``carry_cap + 1``
    steps, i.e. without a time limit that short) loses its oldest steps, never learned from
    (counted in ``dropped``); the later steps' returns stay exact.
    """

    def __init__(
        self,
        num_envs: int,
        window: int,
        carry_cap: int,
        obs_shape: tuple[int, ...],
        capacity: int | None = None,
    ):
        self.num_envs, self.window, self.carry_cap = num_envs, window, carry_cap
        self.capacity = capacity or max(2 * num_envs * window, carry_cap + window)
        if self.capacity < carry_cap + window:
            raise ValueError("capacity must hold carry_cap + window steps (the longest episode)")
        self.obs_shape = tuple(obs_shape)
        empty = (
            np.zeros((0, *obs_shape), np.float32),
            np.zeros(0, np.int32),
            np.zeros(0, np.float32),
        )
        self.carry = [empty] * num_envs
        self.queue: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.dropped = 0

    def carried(self) -> list[int]:
        """Steps of the unfinished episode carried per environment."""
        return [len(c[1]) for c in self.carry]

    @property
    def queued(self) -> int:
        """Steps of complete episodes waiting for room in a batch."""
        return sum(len(e[1]) for e in self.queue)

    def assemble(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, ends: np.ndarray):
        """Returns ``(obs, actions, rewards, ends)`` shaped ``[capacity, 1, ...]``."""
        for i in range(self.num_envs):
            c_obs, c_act, c_rew = self.carry[i]
            k = len(c_act)
            o = np.concatenate([c_obs, obs[:, i]])
            a = np.concatenate([c_act, actions[:, i]])
            r = np.concatenate([c_rew, rewards[:, i]])
            first = 0
            for last in k + np.flatnonzero(ends[:, i]):
                self.queue.append((o[first : last + 1], a[first : last + 1], r[first : last + 1]))
                first = last + 1
            if len(a) - first > self.carry_cap:
                self.dropped += len(a) - first - self.carry_cap
                first = len(a) - self.carry_cap
            self.carry[i] = (o[first:], a[first:], r[first:])
        size = self.capacity
        out_obs = np.zeros((size, 1, *self.obs_shape), np.float32)
        out_act = np.zeros((size, 1), np.int32)
        out_rew = np.zeros((size, 1), np.float32)
        out_end = np.zeros((size, 1), bool)
        t = 0
        while self.queue and t + len(self.queue[0][1]) <= size:
            o, a, r = self.queue.pop(0)
            m = len(a)
            out_obs[t : t + m, 0], out_act[t : t + m, 0], out_rew[t : t + m, 0] = o, a, r
            out_end[t + m - 1, 0] = True
            t += m
        return out_obs, out_act, out_rew, out_end


# --- rollout source ------------------------------------------------------------------------------
class Window(NamedTuple):
    obs: np.ndarray  # [W, N, *obs_shape] raw observations the actions were taken in
    actions: np.ndarray  # [W, N]
    rewards: np.ndarray  # [W, N] rewards to learn from (bootstrapped at truncation, if asked)
    ends: np.ndarray  # [W, N] terminated | truncated
    episode_returns: list[float]  # undiscounted returns of the episodes that ended in the window
    episode_lengths: list[int]


def make_vector_env(env_id: str, num_envs: int) -> Any:
    """A gymnasium ``SyncVectorEnv`` of ``num_envs`` copies, same-step autoreset, never rendering."""
    import gymnasium as gym

    make_gym_env(env_id).close()  # unknown ids and missing extras become ConfigError here
    return gym.vector.SyncVectorEnv(
        [lambda: make_gym_env(env_id) for _ in range(num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )


class HostRollout:
    """Steps a vector of gymnasium environments with the jitted policy, one window at a time."""

    def __init__(
        self,
        env_id: str,
        networks: Networks,
        num_envs: int,
        window: int,
        gamma: float,
        seed: int,
        bootstrap_value: bool,
    ):
        self.envs = make_vector_env(env_id, num_envs)
        self.num_envs, self.window, self.gamma = num_envs, window, gamma
        self.act = make_act(networks, greedy=False)
        self.bootstrap_value = bootstrap_value
        if bootstrap_value:
            self.value = jax.jit(lambda p, norm, o: networks.value.apply(p, normalize_obs(norm, o)))
        self.obs, _ = self.envs.reset(seed=seed)
        self.ep_return = np.zeros(num_envs, np.float64)
        self.ep_length = np.zeros(num_envs, np.int64)

    def collect(self, params: Any, norm: Any, key: jax.Array) -> tuple[Window, jax.Array]:
        """``window`` steps of every environment under ``params``; returns the window and key."""
        w, n = self.window, self.num_envs
        obs = np.zeros((w, n, *self.obs.shape[1:]), np.float32)
        actions = np.zeros((w, n), np.int32)
        rewards = np.zeros((w, n), np.float32)
        ends = np.zeros((w, n), bool)
        returns: list[float] = []
        lengths: list[int] = []
        for t in range(w):
            obs[t] = self.obs
            action, key = self.act(params["policy"], norm, self.obs, key)
            action = np.asarray(action)
            next_obs, reward, terminated, truncated, info = self.envs.step(action)
            done = terminated | truncated
            learn = reward.astype(np.float32)
            cut = truncated & ~terminated
            if self.bootstrap_value and cut.any():
                final = np.array(self.obs, np.float32, copy=True)
                for i in np.flatnonzero(cut):
                    final[i] = info["final_obs"][i]
                value = np.asarray(self.value(params["value"], norm, final))
                learn = learn + np.where(cut, self.gamma * value, 0.0).astype(np.float32)
            actions[t], rewards[t], ends[t] = action, learn, done
            self.ep_return += reward
            self.ep_length += 1
            for i in np.flatnonzero(done):
                returns.append(float(self.ep_return[i]))
                lengths.append(int(self.ep_length[i]))
            self.ep_return[done] = 0.0
            self.ep_length[done] = 0
            self.obs = next_obs
        return Window(obs, actions, rewards, ends, returns, lengths), key

    def close(self) -> None:
        self.envs.close()


# --- evaluation ----------------------------------------------------------------------------------
class Evaluator:
    """Runs exactly ``episodes`` whole episodes on up to :data:`EVAL_ENVS` host environments.

    Episode ``k`` resets with seed ``seed + k`` and runs on environment ``k % num_envs``; finished
    environments are not stepped further, so no step is wasted and no episode is favoured for being
    short. The policy is jitted over the (fixed) batch of environments.
    """

    def __init__(self, env_id: str, networks: Networks, episodes: int, greedy: bool):
        self.episodes = episodes
        self.envs = [make_gym_env(env_id) for _ in range(min(episodes, EVAL_ENVS))]
        self.act = make_act(networks, greedy)

    def run(self, policy_params: Any, norm: Any, seed: int, key: jax.Array) -> np.ndarray:
        n = len(self.envs)
        queues = [list(range(i, self.episodes, n)) for i in range(n)]
        returns = np.zeros(self.episodes, np.float64)
        current = [-1] * n
        obs = None
        active = np.zeros(n, bool)

        def start(i: int) -> np.ndarray | None:
            if not queues[i]:
                active[i] = False
                return None
            current[i] = queues[i].pop(0)
            active[i] = True
            o, _ = self.envs[i].reset(seed=seed + current[i])
            return o

        first = [start(i) for i in range(n)]
        obs = np.stack(first).astype(np.float32)
        while active.any():
            action, key = self.act(policy_params, norm, obs, key)
            action = np.asarray(action)
            for i in np.flatnonzero(active):
                o, r, terminated, truncated, _ = self.envs[i].step(int(action[i]))
                returns[current[i]] += float(r)
                if terminated or truncated:
                    o = start(i)
                if o is not None:
                    obs[i] = o
        return returns

    def close(self) -> None:
        for env in self.envs:
            env.close()


# --- the trainer ---------------------------------------------------------------------------------
def _seeds(seed: int) -> tuple[int, int]:
    """Training-environment seed and evaluation seed base, both derived from ``seed``."""
    train, evaluation = np.random.SeedSequence(seed).generate_state(2)
    return int(train) % 2**30, int(evaluation) % 2**30


def num_host_updates(cfg: Config) -> int:
    """Updates of a host run: ``total_steps // (num_envs * rollout_steps)``, at least one."""
    return max(1, cfg.total_steps // (cfg.num_envs * cfg.rollout_steps))


def train_host(
    cfg: Config, info: EnvInfo, resume: dict[str, Any] | None = None
) -> Iterator[dict[str, Any]]:
    """Train ``cfg`` on gymnasium environments, yielding the events of :func:`train_compiled`.

    Every evaluation event carries a ``checkpoint``: learner state, PRNG keys, observation
    statistics and counters. ``resume`` continues from one exactly, except that gymnasium
    environments cannot save their internal state: a resumed run starts fresh episodes (their seeds
    derived from the run's seed and the update), and episodes in flight at the checkpoint are lost.

    ``train`` rows (one per update) add ``sps`` (training steps per second of the update),
    ``learn_steps`` (steps with a complete return in the update's batch), ``queued_steps``
    (complete episodes' steps waiting for room), ``rollout_time`` and ``learn_time`` (seconds).
    ``total_steps`` bounds the training steps: :func:`num_host_updates` updates, evaluated every
    ``eval_every`` updates and after the last one. ``num_seeds`` must be 1.
    """
    if cfg.num_seeds != 1:
        raise ConfigError("the host trainer runs one seed at a time; use --num-seeds 1")
    use_value = cfg.baseline == "value"
    networks = make_networks(info.num_actions, cfg.hidden_sizes, cfg.activation, use_value)
    per_update = cfg.num_envs * cfg.rollout_steps
    num_updates = num_host_updates(cfg)
    learner = make_learner(cfg, networks, num_updates)
    update = make_host_update(learner.update, cfg.gamma)
    key = jax.random.PRNGKey(cfg.seed)
    key, init_key, act_key, eval_key = jax.random.split(key, 4)
    state = learner.init(init_key, jnp.zeros((1, *info.obs_shape), jnp.float32))
    train_seed, eval_seed = _seeds(cfg.seed)
    carry_cap = (info.max_episode_steps - 1) if info.max_episode_steps else 3 * cfg.rollout_steps
    assembler = EpisodeAssembler(cfg.num_envs, cfg.rollout_steps, carry_cap, info.obs_shape)
    rms = RunningMeanStd(info.obs_shape) if cfg.obs_norm else None
    rollout = HostRollout(cfg.env_id, networks, cfg.num_envs, cfg.rollout_steps, cfg.gamma,
                          train_seed, use_value)  # fmt: skip
    evaluator = Evaluator(cfg.env_id, networks, cfg.eval_episodes, cfg.eval_greedy)
    start = time.perf_counter()
    env_steps, evaluations = 0, 0
    returns: list[float] = []
    lengths: list[int] = []
    solved_at: dict[str, dict[str, Any]] = {}
    first = 1

    def saved_tree() -> dict[str, Any]:
        return {"learner": state, "keys": (act_key, eval_key), "rms": rms.exact() if rms else {}}

    if resume is not None:
        try:
            tree = restore_state(saved_tree(), resume["state"])
        except ValueError as e:
            raise ConfigError(f"the checkpoint does not fit this run's config: {e}") from None
        state, (act_key, eval_key) = tree["learner"], tree["keys"]
        if rms:
            rms.load(jax.device_get(tree["rms"]))
        first, env_steps = int(resume["update"]) + 1, int(resume["env_steps"])
        evaluations, solved_at = int(resume["chunk"]), dict(resume.get("solved_at", {}))
        rollout.close()
        rollout = HostRollout(cfg.env_id, networks, cfg.num_envs, cfg.rollout_steps, cfg.gamma,
                              (train_seed + first) % 2**30, use_value)  # fmt: skip
    try:
        for u in range(first, num_updates + 1):
            t0 = time.perf_counter()
            norm = rms.state() if rms else None
            window, act_key = rollout.collect(state.params, norm, act_key)
            t1 = time.perf_counter()
            if rms:
                rms.update(window.obs)
                norm = rms.state()
            batch = assembler.assemble(window.obs, window.actions, window.rewards, window.ends)
            state, metrics = update(state, norm, *batch)
            metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
            t2 = time.perf_counter()
            env_steps += per_update
            returns += window.episode_returns
            lengths += window.episode_lengths
            row = {
                "seed": cfg.seed, "update": u, "env_steps": env_steps,
                "episode_return": float(np.mean(returns)) if returns else float("nan"),
                "episode_length": float(np.mean(lengths)) if lengths else float("nan"),
                "episodes": len(returns), **metrics,
                "wall_time": t2 - start, "sps": per_update / (t2 - t0),
                "rollout_time": t1 - t0, "learn_time": t2 - t1, "queued_steps": assembler.queued,
            }  # fmt: skip
            returns, lengths = [], []
            yield {"train": [row]}
            if u % cfg.eval_every and u != num_updates:
                continue
            norm_now = rms.state() if rms else None
            base = eval_seed + evaluations * cfg.eval_episodes
            eval_key, k = jax.random.split(eval_key)
            r = evaluator.run(state.params["policy"], norm_now, base, k)
            evaluations += 1
            threshold = info.solve_threshold
            is_solved = threshold is not None and float(r.mean()) >= threshold
            ev = {"seed": cfg.seed, "update": u, "env_steps": env_steps, "eval_mean": float(r.mean()),
                  "eval_std": float(r.std()), "eval_min": float(r.min()), "eval_max": float(r.max()),
                  "eval_episodes": int(r.size), "solved": bool(is_solved),
                  "wall_time": time.perf_counter() - start}  # fmt: skip
            if is_solved and str(cfg.seed) not in solved_at:
                solved_at[str(cfg.seed)] = ev
            checkpoint = {"chunk": evaluations, "update": u, "env_steps": env_steps,
                          "solved_at": solved_at, "state": flatten_state(saved_tree())}  # fmt: skip
            yield {"eval": [ev], "params": jax.device_get(state.params), "checkpoint": checkpoint}
            if cfg.stop_when_solved and is_solved:
                break
    finally:
        rollout.close()
        evaluator.close()
    params = dict(jax.device_get(state.params))
    if rms:
        params["obs_norm"] = rms.state()
    yield {"done": {"params": params, "env_steps": env_steps, "solved_at": solved_at,
                    "dropped_steps": assembler.dropped}}  # fmt: skip


# --- shipped policies ----------------------------------------------------------------------------
def load_pretrained(env_id: str) -> tuple[Config, Any]:
    """The shipped policy for ``env_id``: its config and parameters (``pretrained/<id>.msgpack``)."""
    from flax import serialization

    folder = resources.files("reinforce_jax") / "pretrained"
    params_file, meta_file = folder / f"{env_id}.msgpack", folder / f"{env_id}.json"
    if not params_file.is_file() or not meta_file.is_file():
        raise ConfigError(f"no pretrained policy for {env_id}")
    meta = json.loads(meta_file.read_text())
    cfg = validate(from_dict(meta["config"]))
    return cfg, serialization.msgpack_restore(params_file.read_bytes())


def evaluate_policy(
    cfg: Config,
    params: Any,
    env_id: str | None = None,
    episodes: int = 100,
    seed: int = 0,
    greedy: bool = True,
) -> np.ndarray:
    """Returns of ``episodes`` host episodes (episode ``k`` reset with seed ``seed + k``).

    ``params`` holds ``"policy"`` (and ``"obs_norm"`` when the policy was trained with it).
    Greedy evaluation is deterministic; sampled evaluation draws from ``PRNGKey(seed)``.
    """
    env_id = env_id or cfg.env_id
    info = env_info(env_id)
    networks = make_networks(info.num_actions, cfg.hidden_sizes, cfg.activation)
    evaluator = Evaluator(env_id, networks, episodes, greedy)
    try:
        return evaluator.run(
            params["policy"], params.get("obs_norm"), seed, jax.random.PRNGKey(seed)
        )
    finally:
        evaluator.close()
