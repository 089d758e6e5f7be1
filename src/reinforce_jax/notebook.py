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
import jax.numpy as jnp
import numpy as np

from reinforce_jax import math as rl
from reinforce_jax.config import Config, ConfigError
from reinforce_jax.envs import EnvInfo, make_gym_env
from reinforce_jax.learner import Batch, make_learner
from reinforce_jax.policy import make_networks
from reinforce_jax.trainer import flatten_state, restore_state


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


_returns_jit = jax.jit(rl.discounted_returns, static_argnums=1)


def episode_returns(rewards: list[float], gamma: float = 0.99) -> np.ndarray:
    """:func:`reinforce_jax.math.discounted_returns` of one episode, padded to a power of two.

    Trailing zero rewards leave the real steps' returns unchanged and bound recompilations to
    about log2(max episode length) shapes.
    """
    n = len(rewards)
    padded = np.zeros(1 << max(n - 1, 0).bit_length(), np.float32)
    padded[:n] = rewards
    return np.asarray(_returns_jit(padded, gamma))[:n]


def train_notebook(
    cfg: Config, info: EnvInfo, resume: dict[str, Any] | None = None
) -> Iterator[dict[str, Any]]:
    """Run the notebook's procedure, yielding events (see :mod:`reinforce_jax.trainer`).

    Each evaluation comes between episodes, and its event carries a ``checkpoint``: parameters,
    Adam state, PRNG key, the memory's contents, the sampler's generator state and the counters.
    ``resume`` restores all of that exactly; only the gymnasium environments restart, reseeded
    from the run's seed and the episode number (their internal state cannot be saved).
    """
    networks = make_networks(info.num_actions, cfg.hidden_sizes, cfg.activation)
    learner = make_learner(cfg, networks, cfg.num_episodes * cfg.learn_steps_per_episode)
    key = jax.random.PRNGKey(cfg.seed)
    key, init_key = jax.random.split(key)
    state = learner.init(init_key, jnp.zeros((1, *info.obs_shape), jnp.float32))
    update = jax.jit(learner.update)

    @jax.jit
    def act(key: jax.Array, params: Any, obs: jax.Array) -> jax.Array:
        logits = networks.policy.apply(params["policy"], obs[None])[0]
        return rl.sample_action(key, logits)

    @jax.jit
    def act_greedy(params: Any, obs: jax.Array) -> jax.Array:
        return rl.greedy_action(networks.policy.apply(params["policy"], obs[None])[0])

    rng = np.random.default_rng(cfg.seed)
    buffer = EpisodeReturnsBuffer(cfg.buffer_size, cfg.batch_size, cfg.gamma, rng)
    env = make_gym_env(info.env_id)
    eval_env = make_gym_env(info.env_id)
    start = time.perf_counter()
    env_steps, first = 0, 0
    history: list[float] = []
    metrics: dict[str, Any] = {}

    def saved_tree() -> dict[str, Any]:
        memory = [np.asarray(x) for x in zip(*buffer.memory, strict=True)] if buffer.memory else []
        return {"learner": state, "key": key, "memory": memory}

    env_seed, eval_seed = cfg.seed, cfg.seed + 10_000
    if resume is not None:
        template = saved_tree()
        n = int(resume["memory_size"])
        template["memory"] = [np.zeros((n, *info.obs_shape), np.float32), np.zeros(n, np.int64),
                              np.zeros(n, np.float32)] if n else []  # fmt: skip
        try:
            tree = restore_state(template, resume["state"])
        except ValueError as e:
            raise ConfigError(f"the checkpoint does not fit this run's config: {e}") from None
        state, key = tree["learner"], tree["key"]
        if n:
            buffer.memory.extend(zip(*tree["memory"], strict=True))
        rng.bit_generator.state = resume["sampler"]
        first, env_steps, history = (
            int(resume["episode"]) + 1,
            int(resume["env_steps"]),
            list(resume["history"]),
        )
        env_seed, eval_seed = env_seed + 100_000 * first, eval_seed + 100_000 * first
    try:
        obs, _ = env.reset(seed=env_seed)
        eval_env.reset(seed=eval_seed)
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
            yield {"train": [{
                "episode": episode,
                "episode_return": episode_return,
                "episode_length": length,
                "env_steps": env_steps,
                "updates": int(state.step),
                "wall_time": time.perf_counter() - start,
                **{k: float(v) for k, v in metrics.items()},
            }]}  # fmt: skip
            if episode % cfg.eval_every_episodes == 0:
                returns = []
                for _ in range(cfg.eval_episodes):
                    eval_obs, _ = eval_env.reset()
                    total, eval_done = 0.0, False
                    while not eval_done:
                        if cfg.eval_greedy:
                            action = int(act_greedy(state.params, eval_obs))
                        else:
                            key, act_key = jax.random.split(key)
                            action = int(act(act_key, state.params, eval_obs))
                        eval_obs, reward, terminated, truncated, _ = eval_env.step(action)
                        total += float(reward)
                        eval_done = terminated or truncated
                    returns.append(total)
                yield {"eval": [{
                    "episode": episode,
                    "episode_return": episode_return,
                    "average_episode_return": float(np.mean(history[-20:])),
                    "eval_mean": float(np.mean(returns)),
                    "eval_std": float(np.std(returns)),
                    "eval_episodes": len(returns),
                    "env_steps": env_steps,
                    "wall_time": time.perf_counter() - start,
                }], "params": jax.device_get(state.params), "checkpoint": {
                    "chunk": episode // cfg.eval_every_episodes + 1, "episode": episode,
                    "env_steps": env_steps, "history": history[-20:],
                    "memory_size": len(buffer.memory), "sampler": rng.bit_generator.state,
                    "state": flatten_state(saved_tree())}}  # fmt: skip
    finally:
        env.close()
        eval_env.close()
    yield {"done": {"params": jax.device_get(state.params), "env_steps": env_steps}}
