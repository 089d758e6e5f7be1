"""One evaluation: run whole episodes with the one ``act``, then judge them the same way everywhere.

Two backends run episodes: :func:`make_jax_evaluate` (a JAX-native environment, inside the compiled
program) and :class:`HostEvaluator` (gymnasium environments stepped from Python: what
``reinforce evaluate``, ``reinforce video`` and every published figure use). One
:func:`eval_row` and one :func:`is_solved` turn returns into the rows and verdicts every trainer
logs; :func:`summarize_returns` adds a 95% t-interval and the named thresholds of the env spec.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from reinforce_jax.agent import Act, PolicyAct, make_host_act
from reinforce_jax.envs.functional import FunctionalEnv
from reinforce_jax.envs.registry import make_gym_env
from reinforce_jax.envs.spec import THRESHOLDS
from reinforce_jax.stats import t_critical

# Episodes of a pre-check: the cheap first look at a policy that decides whether a trainer plays
# a whole evaluation (the compiled trainer's first episodes, the envpool trainer's own pool).
PRECHECK_EPISODES = 20
EVAL_ENVS = 25  # at most this many host evaluation environments (100 episodes: 4 each)


def t_quantile_975(dof: int) -> float:
    """The two-sided 95% Student-t critical value for ``dof`` degrees of freedom (exact, from
    :func:`reinforce_jax.stats.t_critical`; a table ending at 30 dof would be 4% too narrow at 31)."""
    return t_critical(dof, 0.95)


def is_solved(mean: float | np.ndarray, threshold: float | None) -> bool | np.ndarray:
    """The solve check: a mean evaluation return at least ``threshold`` (never, without one)."""
    if threshold is None:
        return np.zeros(np.shape(mean), bool) if np.ndim(mean) else False
    return np.asarray(mean) >= threshold if np.ndim(mean) else bool(mean >= threshold)


def eval_row(returns: np.ndarray, threshold: float | None, **ids: Any) -> dict[str, Any]:
    """The evaluation row every trainer logs: ``ids`` (seed, update, ...) plus the figures."""
    r = np.asarray(returns, np.float64)
    mean = float(r.mean())
    return {**ids, "eval_mean": mean, "eval_std": float(r.std()), "eval_min": float(r.min()),
            "eval_max": float(r.max()), "eval_episodes": int(r.size),
            "solved": is_solved(mean, threshold)}  # fmt: skip


def make_jax_evaluate(
    env: FunctionalEnv, act: Act | PolicyAct, num_episodes: int, episodes: range | None = None
) -> Callable[[Any, jax.Array], jax.Array]:
    """``evaluate(params, key) -> returns[num_episodes]``: one full episode per environment, jittable.

    Step ``t`` draws its randomness from the ``t``-th of ``max_episode_steps`` keys split from
    ``key``; the loop stops once every episode has ended (a ``while_loop``: early policies fall
    fast, so early evaluations cost a fraction of the time limit).

    ``episodes`` (a range within ``num_episodes``) plays only those episodes of the evaluation,
    each with the randomness it has in the whole one (keys and action noise are drawn for all
    ``num_episodes`` and sliced), so an evaluation played in parts scores its episodes as one
    played at once (the tests check it). A part needs a :class:`PolicyAct` (its noise can be sliced).
    """
    part = range(num_episodes) if episodes is None else episodes
    if not (0 <= part.start < part.stop <= num_episodes and part.step == 1):
        raise ValueError(f"episodes {part} is not a part of {num_episodes} episodes")
    lo, hi = part.start, part.stop
    n = hi - lo
    sliced = isinstance(act, PolicyAct)
    if not sliced and n < num_episodes:
        raise TypeError("playing part of an evaluation needs a PolicyAct")

    def evaluate(params: Any, key: jax.Array) -> jax.Array:
        key, reset_key = jax.random.split(key)
        state, obs = jax.vmap(env.reset)(jax.random.split(reset_key, num_episodes)[lo:hi])
        keys = jax.random.split(key, env.max_episode_steps)

        def step(carry):
            t, state, obs, total, alive = carry
            act_key, env_key = jax.random.split(keys[t])
            if sliced:
                noise = act.noise(act_key, (num_episodes,))[lo:hi]
                action = act.from_noise(params, obs, noise)
            else:
                action = act(params, obs, act_key)
            state, obs, reward, terminated, truncated = jax.vmap(env.step)(
                jax.random.split(env_key, num_episodes)[lo:hi], state, action
            )
            total = total + jnp.where(alive, reward, 0.0)
            alive = alive & ~(terminated | truncated)
            return t + 1, state, obs, total, alive

        def running(carry) -> jax.Array:
            t, *_, alive = carry
            return (t < env.max_episode_steps) & jnp.any(alive)

        init = (jnp.zeros((), jnp.int32), state, obs, jnp.zeros((n,)), jnp.ones((n,), bool))
        *_, total, _ = jax.lax.while_loop(running, step, init)
        return total

    return evaluate


def precheck_total(num_episodes: int, first: int, threshold: float, max_return: float) -> float:
    r"""The least total the first ``first`` episodes of an evaluation must score for the mean of
    all ``num_episodes`` to still reach ``threshold``, the others scoring at most ``max_return``:

    .. math:: \sum_{i<p} G_i \ge n T - (n - p) R_{\max}

    A necessary condition, so an evaluation that stops when its first episodes fall short of it
    reaches every solve verdict the whole evaluation would (CartPole at 500: 20 perfect episodes).
    """
    if not 0 < first < num_episodes:
        raise ValueError(f"first must be in 1..{num_episodes - 1}, got {first}")
    return num_episodes * threshold - (num_episodes - first) * max_return


class HostEvaluator:
    """Runs exactly ``episodes`` whole episodes on up to ``max_envs`` gymnasium environments.

    Episode ``k`` resets with seed ``seed + k`` (or, with ``seed=None``, continues each
    environment's own random stream) and runs on environment ``k % num_envs``; finished
    environments are not stepped further, so no step is wasted and no episode is favoured for being
    short. ``act`` is jitted over the (fixed) batch of environments.
    """

    def __init__(
        self,
        env_id: str,
        act: Act,
        episodes: int,
        max_envs: int = EVAL_ENVS,
        env_args: dict | None = None,
    ):
        self.episodes = episodes
        kwargs = dict(env_args or {})
        self.envs = [make_gym_env(env_id, **kwargs) for _ in range(min(episodes, max_envs))]
        self.act = make_host_act(act)

    def run(self, params: Any, seed: int | None, key: jax.Array) -> tuple[np.ndarray, jax.Array]:
        """The episodes' undiscounted returns, and the key after the actions drawn from it."""
        n = len(self.envs)
        queues = [list(range(i, self.episodes, n)) for i in range(n)]
        returns = np.zeros(self.episodes, np.float64)
        current = [-1] * n
        active = np.zeros(n, bool)

        def start(i: int) -> np.ndarray | None:
            if not queues[i]:
                active[i] = False
                return None
            current[i] = queues[i].pop(0)
            active[i] = True
            o, _ = self.envs[i].reset(seed=None if seed is None else seed + current[i])
            return o

        obs = np.stack([start(i) for i in range(n)]).astype(np.float32)
        while active.any():
            action, key = self.act(params, obs, key)
            action = np.asarray(action)
            for i in np.flatnonzero(active):
                a = action[i] if action.ndim > 1 else int(action[i])
                o, r, terminated, truncated, _ = self.envs[i].step(a)
                returns[current[i]] += float(r)
                if terminated or truncated:
                    o = start(i)
                if o is not None:
                    obs[i] = o
        return returns, key

    def close(self) -> None:
        for env in self.envs:
            env.close()


def summarize_returns(
    env_id: str,
    returns: np.ndarray,
    threshold: float | None,
    greedy: bool,
    seed: int,
    thresholds: dict[str, float] | None = None,
) -> dict[str, Any]:
    r"""Mean, std, min, max and the 95% t-interval :math:`\bar x \pm t_{.975,n-1} s/\sqrt n`.

    ``thresholds`` are the named ones reported beside the solve check (default: the env's table).
    """
    if thresholds is None:
        thresholds = {k: v for k, v in THRESHOLDS.get(env_id, {}).items() if k != "solve"}
    returns = np.asarray(returns, np.float64)
    n = returns.size
    mean = float(returns.mean())
    std = float(returns.std(ddof=1)) if n > 1 else 0.0
    half = t_quantile_975(n - 1) * std / math.sqrt(n) if n > 1 else None
    verdicts = {name: bool(mean >= value) for name, value in thresholds.items()}
    return {
        "env": env_id,
        "episodes": int(n),
        "policy": "greedy" if greedy else "sampled",
        "seed": seed,
        "mean": mean,
        "std": std,
        "min": float(returns.min()),
        "max": float(returns.max()),
        "ci95": None if half is None else [mean - half, mean + half],  # no interval from 1 episode
        "threshold": threshold,
        "solved": is_solved(mean, threshold),
        "thresholds": dict(thresholds),
        "verdicts": verdicts,
        "returns": returns.tolist(),
    }


def format_summary(s: dict[str, Any]) -> str:
    lines = [
        f"{s['env']}: {s['episodes']} {s['policy']} episodes (seed {s['seed']})",
        f"  mean {s['mean']:.2f} ± {s['std']:.2f} (std)   min {s['min']:.1f}   max {s['max']:.1f}",
    ]
    if s["ci95"] is None:
        lines.append("  95% confidence interval of the mean: needs at least 2 episodes")
    else:
        lines.append(
            f"  95% confidence interval of the mean: [{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}]"
        )
    for name, ok in s["verdicts"].items():
        lines.append(f"  {name} threshold {s['thresholds'][name]:g}: {'met' if ok else 'not met'}")
    if s["threshold"] is not None:
        lines.append(f"  verdict: {'SOLVED' if s['solved'] else 'not solved'} "
                     f"(solve check: mean >= {s['threshold']:g})")  # fmt: skip
    return "\n".join(lines)
