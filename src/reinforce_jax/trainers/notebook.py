"""The notebook's training procedure, step for step, on a gymnasium environment (host loop).

One environment stepped from Python with a jitted action function; an episode-returns memory of
``buffer_size`` transitions that receives an episode's steps, with their reward-to-go, when it ends;
``learn_steps_per_episode`` updates on ``batch_size`` transitions sampled without replacement after
every episode once the memory holds a batch; an evaluation of ``eval_episodes`` episodes every
``eval_every_episodes`` episodes (starting with episode 0), sampling actions as the notebook does.

Deviations from the notebook (README, "Deviations"): gymnasium 1.x (``terminated``/``truncated``,
``reset(seed=...)``); returns stay float32 (the notebook casts them to int32); returns are computed
in O(T); the log-probability uses ``log_softmax``; parameters are initialised from the run's seed
rather than a fixed ``PRNGKey(42)``. The trainer yields records and never prints or writes files.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np

from reinforce_jax.agent import make_act
from reinforce_jax.config import Config
from reinforce_jax.core.returns import discounted_returns
from reinforce_jax.envs.registry import make_gym_env
from reinforce_jax.envs.spec import Discrete, EnvSpec
from reinforce_jax.errors import ConfigError
from reinforce_jax.evaluate import HostEvaluator, eval_row
from reinforce_jax.rollout.trajectory import Batch
from reinforce_jax.trainers.common import build_agent, init_learner
from reinforce_jax.trainers.events import (
    Checkpoint,
    Done,
    EvalRows,
    Event,
    TrainRows,
    check_counter,
    flatten_state,
    restore_state,
    stack_seed,
)


class EpisodeReturnsBuffer:
    """The notebook's memory: a FIFO of ``(obs, action, return)`` filled one whole episode at a time."""

    def __init__(self, capacity: int, batch_size: int, gamma: float, rng: np.random.Generator):
        self.batch_size = batch_size
        self.gamma = gamma
        self.memory: deque[tuple[np.ndarray, int, float]] = deque(maxlen=capacity)
        self.episode: list[tuple[np.ndarray, int, float]] = []
        self.rng = rng

    def push(self, obs: np.ndarray, action: int, reward: float, done: bool) -> None:
        self.episode.append((np.asarray(obs, np.float32), action, reward))
        if done:
            returns = episode_returns([r for _, _, r in self.episode], self.gamma)
            self.memory.extend(
                (o, a, g) for (o, a, _), g in zip(self.episode, returns, strict=True)
            )
            self.episode = []

    def is_ready(self) -> bool:
        return len(self.memory) >= self.batch_size

    def sample(self) -> Batch:
        idx = self.rng.choice(len(self.memory), self.batch_size, replace=False)
        obs, actions, returns = zip(*(self.memory[i] for i in idx), strict=True)
        return Batch(
            obs=np.stack(obs).astype(np.float32),
            actions=np.asarray(actions, np.int32),
            returns=np.asarray(returns, np.float32),  # the notebook casts to int32 here
            mask=np.ones(self.batch_size, np.float32),
        )


_returns_jit = jax.jit(discounted_returns, static_argnums=1)


def episode_returns(rewards: list[float], gamma: float = 0.99) -> np.ndarray:
    """:func:`reinforce_jax.core.returns.discounted_returns` of one episode, padded to a power of two.

    Trailing zero rewards leave the real steps' returns unchanged and bound recompilations to
    about log2(max episode length) shapes.
    """
    n = len(rewards)
    padded = np.zeros(1 << max(n - 1, 0).bit_length(), np.float32)
    padded[:n] = rewards
    return np.asarray(_returns_jit(padded, gamma))[:n]


# Settings the notebook's procedure has no use for: refused rather than silently ignored.
_REFUSED = {
    "num_seeds": (1, "it runs one seed at a time"),
    "baseline": ("none", "its procedure learns from plain returns"),
    "normalize_advantages": (False, "its procedure learns from plain returns"),
    "obs_norm": (False, "its procedure feeds raw observations"),
    "lr_decay_steps": (0, "its learning-rate schedule counts learn steps, not environment steps"),
    "entropy_decay_steps": (0, "its learn steps are not environment steps"),
}


def check(cfg: Config, spec: EnvSpec) -> None:
    """Refuse what the notebook trainer cannot run (before anything is written)."""
    for name, (allowed, why) in _REFUSED.items():
        if getattr(cfg, name) != allowed:
            raise ConfigError(
                f"the notebook trainer cannot use {name} = {getattr(cfg, name)!r}: {why} "
                f"({name} must be {allowed!r})"
            )
    if not isinstance(spec.action_space, Discrete):  # its memory stores integer actions
        raise ConfigError(f"the notebook trainer supports Discrete actions only; {spec.env_id} has "
                          "Box actions (use --trainer host, or compiled where a JAX env exists)")  # fmt: skip


class NotebookTrainer:
    """The notebook's procedure, yielding the events every trainer yields.

    Each evaluation comes between episodes and is followed by a checkpoint: parameters, Adam state,
    PRNG key, the memory's contents, the sampler's generator state and the counters. A resumed run
    restores all of that exactly; only the gymnasium environments restart, reseeded from the run's
    seed and the episode number (their internal state cannot be saved).
    """

    name = "notebook"
    unit = "episodes"
    log_style = "notebook"
    curve_window = 20

    def __init__(self, cfg: Config, spec: EnvSpec):
        check(cfg, spec)
        self.cfg, self.spec = cfg, spec
        self.total = cfg.num_episodes
        self.agent = build_agent(cfg, spec, cfg.num_episodes * cfg.learn_steps_per_episode)
        self.greedy_act = make_act(self.agent.networks, self.agent.dist, greedy=True)

    def check_resume(self, resume: Checkpoint) -> None:
        """Refuse a checkpoint whose bookkeeping this run cannot continue from."""
        meta = resume.meta
        episode = check_counter(meta, "episode", 0, self.cfg.num_episodes - 1)
        check_counter(meta, "env_steps", episode + 1)
        check_counter(meta, "memory_size", 0, self.cfg.buffer_size)
        check_counter({"evaluations": resume.evaluations}, "evaluations", 1, episode + 1)
        history = meta.get("history")
        if not isinstance(history, list) or not all(isinstance(h, (int, float)) for h in history):
            raise ConfigError("the checkpoint's episode history is corrupt")
        sampler = meta.get("sampler")
        try:
            np.random.default_rng().bit_generator.state = sampler
        except (TypeError, ValueError, KeyError):
            raise ConfigError("the checkpoint's sampler state is corrupt") from None

    def run(self, resume: Checkpoint | None = None) -> Iterator[Event]:
        cfg, spec, agent = self.cfg, self.spec, self.agent
        key = jax.random.PRNGKey(cfg.seed)
        key, init_key = jax.random.split(key)
        state = init_learner(agent, init_key)
        update = jax.jit(agent.learner.update)

        @jax.jit
        def act(key: jax.Array, params: Any, obs: jax.Array) -> jax.Array:
            return agent.act(params, obs[None], key)[0]

        rng = np.random.default_rng(cfg.seed)
        buffer = EpisodeReturnsBuffer(cfg.buffer_size, cfg.batch_size, cfg.gamma, rng)
        env = make_gym_env(spec.env_id, **spec.env_args)
        # The greedy 100-episode check beside the notebook's own sampled evaluation: fixed seeds,
        # no key drawn, so the notebook's procedure and numbers are untouched.
        greedy = HostEvaluator(spec.env_id, self.greedy_act, 100, env_args=spec.env_args)
        evaluator = HostEvaluator(spec.env_id, agent.eval_act, cfg.eval_episodes, max_envs=1,
                                  env_args=spec.env_args)  # fmt: skip
        start = time.perf_counter()
        env_steps, first, evaluations = 0, 0, 0
        history: list[float] = []
        metrics: dict[str, Any] = {}

        def saved_tree() -> dict[str, Any]:
            memory = (
                [np.asarray(x) for x in zip(*buffer.memory, strict=True)] if buffer.memory else []
            )
            return {"learner": state, "key": key, "memory": memory}

        env_seed, eval_seed = cfg.seed, cfg.seed + 10_000
        if resume is not None:
            template = saved_tree()
            n = int(resume.meta["memory_size"])
            template["memory"] = [np.zeros((n, *spec.obs_shape), np.float32),
                                  np.zeros(n, np.int64), np.zeros(n, np.float32)] if n else []  # fmt: skip
            tree = restore_state(template, resume.state)
            state, key = tree["learner"], tree["key"]
            if n:
                buffer.memory.extend(zip(*tree["memory"], strict=True))
            rng.bit_generator.state = resume.meta["sampler"]
            first = int(resume.meta["episode"]) + 1
            evaluations = resume.evaluations
            env_steps, history = int(resume.meta["env_steps"]), list(resume.meta["history"])
            env_seed, eval_seed = env_seed + 100_000 * first, eval_seed + 100_000 * first
        try:
            obs, _ = env.reset(seed=env_seed)
            evaluator.envs[0].reset(seed=eval_seed)  # evaluation episodes then continue its stream
            stop_reason = f"num_episodes ({cfg.num_episodes}) reached"
            for episode in range(first, cfg.num_episodes):
                if episode > first:
                    obs, _ = env.reset()
                episode_return, length, done = 0.0, 0, False
                while not done:
                    key, act_key = jax.random.split(key)
                    action = int(act(act_key, state.params, obs))
                    next_obs, reward, terminated, truncated, _ = env.step(action)
                    done = terminated or truncated
                    buffer.push(obs, action, float(reward), done)
                    episode_return += float(reward)
                    obs = next_obs
                    length += 1
                env_steps += length
                history.append(episode_return)
                if buffer.is_ready():
                    for _ in range(cfg.learn_steps_per_episode):
                        state, metrics = update(state, buffer.sample())
                yield TrainRows([{
                    "seed": cfg.seed,
                    "episode": episode,
                    "episode_return": episode_return,
                    "episode_length": length,
                    "env_steps": env_steps,
                    "update": int(state.step),
                    "wall_time": time.perf_counter() - start,
                    **{k: float(v) for k, v in metrics.items()},
                }])  # fmt: skip
                over_budget = env_steps >= cfg.total_steps
                if episode % cfg.eval_every_episodes and not over_budget:
                    continue
                returns, key = evaluator.run(state.params, None, key)
                row = eval_row(returns, spec.solve_threshold, seed=cfg.seed, episode=episode,
                               update=int(state.step), env_steps=env_steps,
                               wall_time=time.perf_counter() - start)  # fmt: skip
                row.update(episode_return=episode_return,
                           average_episode_return=float(np.mean(history[-20:])))  # fmt: skip
                g, _ = greedy.run(state.params, eval_seed + 1_000_000 + episode, key)
                row.update(greedy_mean=float(g.mean()),
                           greedy_solved=bool(eval_row(g, spec.solve_threshold)["solved"]))  # fmt: skip
                yield EvalRows([row], stack_seed(state.params))
                meta = {"episode": episode, "env_steps": env_steps, "history": history[-20:],
                        "memory_size": len(buffer.memory), "sampler": rng.bit_generator.state}  # fmt: skip
                evaluations += 1
                yield Checkpoint(evaluations, flatten_state(saved_tree()), meta)
                if cfg.stop_when_solved and row["solved"]:
                    stop_reason = "the notebook's evaluation met the solve check (stop_when_solved)"
                    break
                if over_budget:
                    stop_reason = f"total_steps ({cfg.total_steps:,}) reached"
                    break
        finally:
            env.close()
            evaluator.close()
            greedy.close()
        yield Done(stack_seed(state.params), env_steps, {}, stop_reason=stop_reason)


def build(cfg: Config, spec: EnvSpec) -> NotebookTrainer:
    return NotebookTrainer(cfg, spec)
