r"""The host rollout: any :class:`~reinforce_jax.envs.vector.VectorEnv` stepped from Python.

:class:`HostRollout` steps a vector environment with the jitted :func:`~reinforce_jax.agent.make_act`,
one window of ``rollout_steps`` at a time, bootstrapping truncations from :math:`V` of the final
observation when asked. :class:`EpisodeAssembler` turns windows into the learner's fixed-shape
batch of *complete* episodes: the unfinished tail of an episode that a window cut is carried over
and learned from in the window where it ends, never treated as ended.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

from reinforce_jax.agent import Act, make_host_act
from reinforce_jax.envs.vector import VectorEnv
from reinforce_jax.rollout.trajectory import bootstrap_truncation


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
        action_shape: tuple[int, ...] = (),
        action_dtype: type = np.int32,
    ):
        self.num_envs, self.window, self.carry_cap = num_envs, window, carry_cap
        self.capacity = capacity or max(2 * num_envs * window, carry_cap + window)
        if self.capacity < carry_cap + window:
            raise ValueError("capacity must hold carry_cap + window steps (the longest episode)")
        self.obs_shape = tuple(obs_shape)
        empty = (
            np.zeros((0, *obs_shape), np.float32),
            np.zeros((0, *action_shape), action_dtype),
            np.zeros(0, np.float32),
        )
        self.action_shape, self.action_dtype = tuple(action_shape), action_dtype
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
        out_act = np.zeros((size, 1, *self.action_shape), self.action_dtype)
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


class Window(NamedTuple):
    obs: np.ndarray  # [W, N, *obs_shape] raw observations the actions were taken in
    actions: np.ndarray  # [W, N, *action_shape]
    rewards: np.ndarray  # [W, N] rewards to learn from (bootstrapped at truncation, if asked)
    ends: np.ndarray  # [W, N] terminated | truncated
    episode_returns: list[float]  # undiscounted returns of the episodes that ended in the window
    episode_lengths: list[int]


class HostRollout:
    """Steps a :class:`VectorEnv` with the jitted policy, one window at a time.

    ``act`` is the sampling :func:`~reinforce_jax.agent.make_act`; ``value(params, obs)``, when
    given, bootstraps truncated steps.
    """

    def __init__(
        self,
        envs: VectorEnv,
        act: Act,
        window: int,
        gamma: float,
        seed: int,
        value: Callable[[Any, jax.Array], jax.Array] | None = None,
    ):
        self.envs = envs
        self.num_envs, self.window, self.gamma = envs.num_envs, window, gamma
        self.act = make_host_act(act)
        self.value = jax.jit(value) if value is not None else None
        self.obs = envs.reset(seed)
        self.ep_return = np.zeros(self.num_envs, np.float64)
        self.ep_length = np.zeros(self.num_envs, np.int64)

    def collect(self, params: Any, key: jax.Array) -> tuple[Window, jax.Array]:
        """``window`` steps of every environment under ``params``; returns the window and key."""
        w, n = self.window, self.num_envs
        obs = np.zeros((w, n, *self.obs.shape[1:]), np.float32)
        actions = None
        rewards = np.zeros((w, n), np.float32)
        ends = np.zeros((w, n), bool)
        returns: list[float] = []
        lengths: list[int] = []
        for t in range(w):
            obs[t] = self.obs
            action, key = self.act(params, self.obs, key)
            action = np.asarray(action)
            if actions is None:
                actions = np.zeros((w, *action.shape), action.dtype)
            step = self.envs.step(action)
            done = step.terminated | step.truncated
            learn = step.reward.astype(np.float32)
            if self.value is not None and (step.truncated & ~step.terminated).any():
                value = np.asarray(self.value(params, np.asarray(step.final_obs, np.float32)))
                learn = bootstrap_truncation(learn, step.terminated, step.truncated, value,
                                             self.gamma)  # fmt: skip
            actions[t], rewards[t], ends[t] = action, learn, done
            self.ep_return += step.reward
            self.ep_length += 1
            for i in np.flatnonzero(done):
                returns.append(float(self.ep_return[i]))
                lengths.append(int(self.ep_length[i]))
            self.ep_return[done] = 0.0
            self.ep_length[done] = 0
            self.obs = step.obs
        return Window(obs, actions, rewards, ends, returns, lengths), key

    def close(self) -> None:
        self.envs.close()
