"""What every trainer builds from the config: the agent (networks, distribution, learner, act).

This is where the flat :class:`~reinforce_jax.config.Config` meets the explicit arguments of the
layers below (``make_networks``, ``make_learner``, optax), written once for all trainers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from reinforce_jax.agent import Act, make_act, policy_networks
from reinforce_jax.config import Config
from reinforce_jax.core.distributions import Distribution
from reinforce_jax.envs.spec import EnvSpec
from reinforce_jax.errors import ConfigError
from reinforce_jax.learner import Learner, LearnerState, make_learner
from reinforce_jax.networks import Networks, init_obs_stats, value_output

# XLA options for programs that run once (a trainer's init), where compile time is all that matters.
# On the CPU, XLA's older loop emitters compile CartPole's init in half the time of its fusion
# emitters (0.33 against 0.66 s on one core) and give the very same parameters (checked for
# CartPole, Acrobot, Pendulum and MountainCar); other backends ignore the flag.
RUN_ONCE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True,
            "xla_cpu_use_fusion_emitters": False}  # fmt: skip


def loop_options() -> dict[str, Any] | None:
    """XLA options for a trainer's chunk program: on the CPU, LLVM's O1 instead of its default.

    Measured on the 2-core CPU (CartPole, Acrobot, Pendulum, MountainCar chunks): it compiles in
    55-70% of the time (CartPole's 16-seed chunk 2.2 s instead of 3.8 s) and runs as fast or
    faster (its loops are small kernels that O2's extra passes do not speed up). It changes the
    low bits of some results (another rounding order), so runs are reproducible under it, not
    bit-equal to runs compiled before it. Other backends keep XLA's defaults.
    """
    if jax.default_backend() != "cpu":
        return None
    # XLA's older CPU loop emitters too: half the compile CPU (CartPole chunk on one core 3.7 ->
    # 1.9 s; a cold start 4.6 -> 3.6 s on 2 cores; LunarLander's envpool chunk 4.9 -> 3.2 s),
    # CartPole chunks 5-10% slower, another rounding.
    return {"xla_backend_optimization_level": 1, "xla_cpu_use_fusion_emitters": False}


def sweep_rows(
    cfg: Config,
    rows: list[dict[str, Any]] | None,
    hyper: dict[str, list[float]] | None,
    traceable: tuple[str, ...],
) -> tuple[list[dict[str, Any]], dict[str, list[float]]]:
    """A batching trainer's row labels (default: ``cfg``'s seeds, ``{"seed": s}``) and per-row
    values of traced settings (a sweep's), checked: one value per row, ``traceable`` names only."""
    rows = rows or [{"seed": s} for s in range(cfg.seed, cfg.seed + cfg.num_seeds)]
    hyper = {name: list(v) for name, v in (hyper or {}).items()}
    unknown = set(hyper) - set(traceable)
    if unknown:
        raise ValueError(f"cannot trace {sorted(unknown)}; traceable: {traceable}")
    if any(len(v) != len(rows) for v in hyper.values()):
        raise ValueError("hyper needs one value per row")
    return rows, hyper


class Agent(NamedTuple):
    networks: Networks
    dist: Distribution
    learner: Learner
    act: Act  # sampling: what rollouts use
    eval_act: Act  # greedy or sampled, as cfg.eval_greedy says
    value: Callable[[Any, jax.Array], jax.Array] | None  # V(s) for truncation bootstraps
    obs_shape: tuple[int, ...]
    obs_norm: bool


def decay_updates(cfg: Config, num_updates: int, steps_per_update: int | None) -> int:
    """Updates over which a linear schedule decays: ``lr_decay_steps`` environment steps when set
    (so a smaller budget runs the very same dynamics, only shorter), else the whole run."""
    if cfg.lr_decay_steps and steps_per_update:
        return max(1, -(-cfg.lr_decay_steps // steps_per_update))
    return max(num_updates, 1)


def entropy_schedule(
    cfg: Config, steps_per_update: int | None
) -> Callable[[jax.Array], jax.Array] | None:
    """The entropy coefficient's multiplier per update: 1 falling linearly to 0 over
    ``entropy_decay_steps`` environment steps (None when the bonus is constant). A decaying bonus
    explores early and lets the policy sharpen later, so its greedy (argmax) twin acts like it."""
    if not cfg.entropy_decay_steps or not steps_per_update:
        return None
    return optax.linear_schedule(1.0, 0.0, max(1, -(-cfg.entropy_decay_steps // steps_per_update)))


def make_optimizer(
    cfg: Config,
    num_updates: int,
    steps_per_update: int | None = None,
    *,
    traced: bool = False,
    counts_per_update: int = 1,
    per_network: bool | None = None,
) -> tuple[optax.GradientTransformation, Callable[..., jax.Array]]:
    """Adam with the configured schedule, behind optional global-norm clipping, and the schedule.

    ``traced=True`` builds it with ``optax.inject_hyperparams`` so that ``learning_rate`` (the
    schedule's peak) and ``max_grad_norm`` are state, not constants: a sweep replaces them per
    configuration inside one compiled program. Plain runs keep constants: XLA fuses them
    differently, and the published figures were made with them. The schedule is
    ``schedule(step, peak=cfg.learning_rate)``.

    ``counts_per_update``: optimizer steps per update (the value-only steps' optimizer takes
    ``value_steps`` each update): the optimizer's own linear decay spans that many times the
    updates, so its step size follows the update's. The returned ``schedule`` is per update.

    ``per_network`` (default: ``cfg.clip_scope == "per_network"``): clip each top-level entry of
    the gradients (``policy``, ``value``) to ``max_grad_norm`` on its own; pass ``False`` for an
    optimizer over one network's parameters.
    """
    if per_network is None:
        per_network = cfg.clip_scope == "per_network"
    horizon = (
        decay_updates(cfg, num_updates, steps_per_update) if cfg.lr_schedule == "linear" else 0
    )
    decay = optax.linear_schedule(1.0, 0.0, horizon) if horizon else None
    horizon *= counts_per_update

    def schedule(step: jax.Array, peak: Any = cfg.learning_rate) -> jax.Array:
        if decay is None:
            return jnp.full(jnp.shape(step), peak, jnp.float32)
        return peak * decay(step)

    clip = cfg.max_grad_norm > 0
    if traced:
        optimizer = optax.inject_hyperparams(
            _adam, static_args=("horizon", "clip", "per_network")
        )(
            learning_rate=cfg.learning_rate, max_grad_norm=max(cfg.max_grad_norm, 0.0),
            horizon=horizon, clip=clip, per_network=per_network,
        )  # fmt: skip
    else:
        optimizer = _adam(cfg.learning_rate, cfg.max_grad_norm, horizon, clip, per_network)
    return optimizer, schedule


def _adam(
    learning_rate: Any, max_grad_norm: Any, horizon: int, clip: bool, per_network: bool = False
) -> optax.GradientTransformation:
    """Adam at ``learning_rate`` (decaying linearly to 0 over ``horizon`` updates when > 0)."""
    rate: Any = learning_rate
    if horizon and isinstance(learning_rate, float):  # the form the published runs used
        rate = optax.linear_schedule(learning_rate, 0.0, horizon)
    elif horizon:  # a traced peak: the same arithmetic (peak - 0) * frac + 0
        decay = optax.linear_schedule(1.0, 0.0, horizon)
        rate = lambda count: learning_rate * decay(count)  # noqa: E731
    adam = optax.adam(rate)
    if not clip:
        return adam
    clipper = clip_each_by_global_norm if per_network else optax.clip_by_global_norm
    return optax.chain(clipper(max_grad_norm), adam)


def clip_each_by_global_norm(max_norm: Any) -> optax.GradientTransformation:
    """``optax.clip_by_global_norm`` applied to each top-level entry of a dict of gradients.

    With one norm over both networks the value loss's gradient (returns in the hundreds) sets
    the scale the policy's gradient is cut by; clipped apart, each network is cut by its own.
    The state is empty, as ``clip_by_global_norm``'s, so checkpoints keep their structure.
    """
    inner = optax.clip_by_global_norm(max_norm)

    def init(params: Any) -> optax.EmptyState:
        del params
        return optax.EmptyState()

    def update(updates: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
        del params
        clipped = {k: inner.update(v, optax.EmptyState())[0] for k, v in updates.items()}
        return clipped, state

    return optax.GradientTransformation(init, update)


def learner_from_config(
    cfg: Config,
    networks: Networks,
    dist: Distribution,
    num_updates: int,
    steps_per_update: int | None = None,
    *,
    traced: bool = False,
) -> Learner:
    """:func:`make_learner` with the optimizer and loss hyperparameters ``cfg`` names
    (``traced``: the optimizer's too can be replaced per update, see :func:`make_optimizer`)."""
    optimizer, schedule = make_optimizer(cfg, num_updates, steps_per_update, traced=traced)
    value_optimizer = None
    if cfg.value_steps:  # its own Adam (and schedule, counting value_steps per update)
        value_optimizer, _ = make_optimizer(cfg, num_updates, steps_per_update, traced=traced,
                                            counts_per_update=cfg.value_steps,
                                            per_network=False)  # fmt: skip
    return make_learner(
        networks, dist, optimizer, baseline=cfg.baseline,
        normalize_advantages=cfg.normalize_advantages, entropy_coef=cfg.entropy_coef,
        value_coef=cfg.value_coef, schedule=schedule,
        entropy_schedule=entropy_schedule(cfg, steps_per_update),
        value_steps=cfg.value_steps, value_optimizer=value_optimizer, max_kl=cfg.max_kl,
    )  # fmt: skip


def build_agent(
    cfg: Config,
    spec: EnvSpec,
    num_updates: int,
    steps_per_update: int | None = None,
    *,
    traced: bool = False,
) -> Agent:
    """Networks sized for ``spec``'s action space, the distribution, the learner and ``act``.

    A ``Box`` action space gets a :class:`~reinforce_jax.core.distributions.Gaussian` (bounds as
    ``cfg.action_bounds`` says); one that no distribution fits raises :class:`ConfigError`.
    """
    use_value = cfg.baseline == "value"
    try:
        networks, dist = policy_networks(cfg, spec.action_space, use_value)
    except ValueError as e:
        raise ConfigError(f"{spec.env_id}: {e}") from None
    learner = learner_from_config(cfg, networks, dist, num_updates, steps_per_update,
                                  traced=traced)  # fmt: skip
    # Without truncation_bootstrap no trainer completes cut returns: the objective is then the
    # return within the time limit, so an episode that runs out the clock (a hovering lander)
    # is worth what it scored, not what V promises beyond the limit.
    bootstrap = use_value and cfg.truncation_bootstrap
    value = (lambda params, obs: value_output(networks, params, obs)) if bootstrap else None
    return Agent(networks, dist, learner, make_act(networks, dist, greedy=False),
                 make_act(networks, dist, greedy=cfg.eval_greedy), value,
                 tuple(spec.obs_shape), cfg.obs_norm)  # fmt: skip


def init_learner(agent: Agent, key: jax.Array) -> LearnerState:
    """The learner's first state (observation statistics included when ``obs_norm``)."""
    stats = init_obs_stats(agent.obs_shape) if agent.obs_norm else None
    return agent.learner.init(key, jnp.zeros((1, *agent.obs_shape), jnp.float32), stats)


def prng_keys(seeds: Any) -> Any:
    """``[PRNGKey(s) for s in seeds]``, stacked. For the default threefry keys and seeds below
    2**31 that key is ``[0, s]`` (the tests check it against JAX), made here on the host: JAX
    would compile two small programs for it, a tenth of a second of a cold start."""
    seeds = [int(s) for s in seeds]
    if jax.config.jax_default_prng_impl == "threefry2x32" and all(0 <= s < 2**31 for s in seeds):
        return np.stack([np.zeros(len(seeds), np.uint32), np.asarray(seeds, np.uint32)], axis=1)
    return np.stack([np.asarray(jax.random.PRNGKey(s)) for s in seeds])
