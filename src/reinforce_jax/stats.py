r"""Aggregate statistics for learning results over several seeds, after rliable.

Agarwal et al. (2021), "Deep RL at the edge of the statistical precipice", recommend reporting the
interquartile mean (IQM) of per-run scores with a percentile-bootstrap confidence interval, using a
*stratified* bootstrap (runs resampled independently within each task) when there are several
tasks. This module implements those pieces in NumPy only; it mirrors the conventions of
``rliable.metrics.aggregate_iqm`` (``scipy.stats.trim_mean(x, 0.25)``) and of
``rliable.library.StratifiedBootstrap`` with ``method="percentile"``, without pulling in rliable's
dependencies (arch, statsmodels, pandas, seaborn).

Shapes: a 1-D ``scores`` array is ``[runs]`` (one value per seed); a 2-D one is ``[runs, tasks]``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from statistics import NormalDist
from typing import Any

import numpy as np

Axis = int | tuple[int, ...] | None

# Largest number of float64 elements materialised per bootstrap chunk (32 MiB of values plus as many
# of indices): keeps memory bounded for big [runs, tasks] matrices while 2000 x 64 is one chunk.
_CHUNK_ELEMENTS = 1 << 22

# Above this many degrees of freedom the Cornish-Fisher expansion is accurate to ~1e-13 and the
# exact finite series (O(dof) terms per evaluation) is needlessly slow.
_EXACT_T_MAX_DOF = 1000


def _finite_array(values: Any, name: str) -> np.ndarray:
    """``values`` as a non-empty float64 array; NaN or ±inf raise (they are always upstream bugs)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")


# --------------------------------------------------------------------------------------------
# Interquartile mean
# --------------------------------------------------------------------------------------------


def iqm(scores: Any, axis: Axis = -1) -> np.ndarray | float:
    r"""Interquartile mean: the mean of the middle 50% of the values along ``axis``.

    With the :math:`m` values sorted, :math:`x_{(1)} \le \dots \le x_{(m)}`, and
    :math:`k = \lfloor m/4 \rfloor` trimmed from each end,

    .. math:: \mathrm{IQM}(x) = \frac{1}{m - 2k} \sum_{i=k+1}^{m-k} x_{(i)}.

    This is exactly ``scipy.stats.trim_mean(x, 0.25, axis)``: scipy trims
    ``int(0.25 * m)`` values per end, i.e. rounds the cut *down*, so ``m = 5, 6, 7`` keep 3, 4, 5
    values and ``m <= 3`` keeps everything (the IQM is then the mean).

    Args:
        scores: array of scores.
        axis: axis, or tuple of axes, to reduce; ``None`` flattens everything, which is rliable's
            ``aggregate_iqm`` over a ``[runs, tasks]`` matrix. Defaults to the last axis
            (per-seed values).

    Returns:
        The IQM, with the reduced axes removed (a Python float when everything is reduced).
    """
    x = _finite_array(scores, "scores")
    if axis is None or x.ndim == 0:
        x = x.reshape(-1)
        axis = -1
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    if any(not -x.ndim <= a < x.ndim for a in axes):
        raise ValueError(f"axis {axis} out of range for shape {x.shape}")
    axes = tuple(a % x.ndim for a in axes)  # normalise negatives
    if len(set(axes)) != len(axes):
        raise ValueError(f"repeated axis in {axis}")
    # Gather the reduced axes at the end and flatten them into one of length m.
    x = np.moveaxis(x, axes, tuple(range(x.ndim - len(axes), x.ndim)))
    x = x.reshape(*x.shape[: x.ndim - len(axes)], -1)
    m = x.shape[-1]
    k = m // 4  # == int(0.25 * m) exactly: 0.25 is a power of two
    if k:
        # A two-point partition puts exactly the middle m - 2k values between positions k and
        # m - k - 1 (unordered), which is all the mean needs and cheaper than a full sort.
        x = np.partition(x, (k, m - k - 1), axis=-1)[..., k : m - k]
    out = x.mean(axis=-1)
    return float(out) if out.ndim == 0 else out


# --------------------------------------------------------------------------------------------
# Bootstrap
# --------------------------------------------------------------------------------------------


def bootstrap_resamples(scores: Any, reps: int, rng: np.random.Generator) -> np.ndarray:
    r"""``reps`` bootstrap resamples of ``scores``, shape ``[reps, *scores.shape]``.

    1-D ``[runs]``: runs drawn with replacement, :math:`x^*_{b,i} = x_{J_{b,i}}`,
    :math:`J_{b,i} \sim \mathcal U\{0..n-1\}` i.i.d.

    2-D ``[runs, tasks]``: *stratified* by task, :math:`x^*_{b,i,t} = x_{J_{b,i,t},\,t}`: every task
    keeps its own ``runs`` values, drawn independently of the other tasks (rliable's
    ``StratifiedBootstrap`` with ``task_bootstrap=False``).
    """
    x = _finite_array(scores, "scores")
    if x.ndim not in (1, 2):
        raise ValueError(f"scores must be [runs] or [runs, tasks], got shape {x.shape}")
    idx = rng.integers(0, x.shape[0], size=(reps, *x.shape))
    if x.ndim == 1:
        return x[idx]
    return x[idx, np.arange(x.shape[1])]  # column t of every resample only reads column t


def bootstrap_ci(
    scores: Any,
    statistic: Callable[..., Any],
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    *,
    vectorized: bool = True,
) -> tuple[float, float]:
    r"""Percentile-bootstrap confidence interval of ``statistic(scores)``.

    With :math:`\hat\theta^*_b` the statistic of resample :math:`b = 1..B` (see
    :func:`bootstrap_resamples`) and :math:`\alpha = 1 - c`,

    .. math:: \mathrm{CI}_c = \big[\, Q_{\alpha/2}(\hat\theta^*),\;
              Q_{1-\alpha/2}(\hat\theta^*) \,\big],

    :math:`Q` being NumPy's linearly interpolated quantile (as ``arch``'s ``conf_int(...,
    method="percentile")``, which rliable calls).

    Args:
        scores: ``[runs]`` per-seed values, or ``[runs, tasks]`` for a stratified bootstrap.
        statistic: called as ``statistic(resamples, axis=axes)`` on ``resamples`` of shape
            ``[b, *scores.shape]`` with ``axes = -1`` (1-D) or ``(-2, -1)`` (2-D); it must return
            ``[b]``. ``np.mean``, ``np.median`` and :func:`iqm` qualify as they are (over a
            ``[runs, tasks]`` matrix, ``iqm`` then gives rliable's ``aggregate_iqm``). With
            ``vectorized=False`` it is called as ``statistic(resample)`` once per resample and must
            return a scalar (same resamples, so the same interval, only slower).
        reps: number of bootstrap resamples :math:`B`.
        confidence: coverage :math:`c` in (0, 1).
        seed: seed of the ``numpy.random.Generator`` (PCG64); the interval is a deterministic
            function of ``(scores, statistic, reps, seed)`` for a given NumPy version.
        vectorized: see ``statistic``.

    Returns:
        ``(low, high)`` as Python floats.
    """
    _check_confidence(confidence)
    if reps < 1:
        raise ValueError(f"reps must be positive, got {reps}")
    x = _finite_array(scores, "scores")
    if x.ndim not in (1, 2):
        raise ValueError(f"scores must be [runs] or [runs, tasks], got shape {x.shape}")
    axes: int | tuple[int, int] = -1 if x.ndim == 1 else (-2, -1)
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ELEMENTS // x.size)
    stats = []
    for start in range(0, reps, chunk):  # a single iteration unless the data are large
        resamples = bootstrap_resamples(x, min(chunk, reps - start), rng)
        if vectorized:
            s = np.asarray(statistic(resamples, axis=axes), dtype=np.float64)
            if s.shape != (len(resamples),):
                raise ValueError(
                    f"statistic returned shape {s.shape} for {len(resamples)} resamples; it must "
                    f"reduce the sample axes {axes} and keep the leading one (or pass "
                    "vectorized=False)"
                )
        else:
            s = np.array([float(statistic(r)) for r in resamples], dtype=np.float64)
        stats.append(s)
    alpha = 1.0 - confidence
    lo, hi = np.quantile(np.concatenate(stats), [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


# --------------------------------------------------------------------------------------------
# Student-t interval
# --------------------------------------------------------------------------------------------


def _t_central_probability(theta: float, dof: int) -> float:
    r""":math:`A(t|\nu) = P(|T_\nu| \le t)` at :math:`\theta = \arctan(t/\sqrt\nu)`, integer :math:`\nu`.

    Abramowitz & Stegun 26.7.3-4, with :math:`c = \cos^2\theta`:

    - :math:`\nu` odd: :math:`A = \frac{2}{\pi}\big(\theta + \sin\theta\cos\theta
      \sum_{k=0}^{(\nu-3)/2} \prod_{j=1}^{k} \frac{2j}{2j+1}\, c^k\big)` (no sum for :math:`\nu=1`);
    - :math:`\nu` even: :math:`A = \sin\theta \sum_{k=0}^{(\nu-2)/2} \prod_{j=1}^{k}
      \frac{2j-1}{2j}\, c^k`.
    """
    s, c = math.sin(theta), math.cos(theta)
    c2 = c * c
    if dof % 2:
        total, term = 0.0, 1.0
        for k in range((dof - 1) // 2):  # k = 0 .. (dof-3)/2
            if k:
                term *= c2 * (2 * k) / (2 * k + 1)
            total += term
        return 2.0 / math.pi * (theta + s * c * total)
    total, term = 0.0, 1.0
    for k in range(dof // 2):  # k = 0 .. (dof-2)/2
        if k:
            term *= c2 * (2 * k - 1) / (2 * k)
        total += term
    return s * total


@functools.lru_cache(maxsize=256)
def t_critical(dof: int, confidence: float = 0.95) -> float:
    r"""Two-sided Student-t critical value :math:`t` with :math:`P(|T_\nu| \le t) = c`.

    Equivalently the :math:`(1+c)/2` quantile :math:`t_{(1+c)/2,\,\nu}` (12.706 for
    :math:`\nu = 1`, 2.042 for 30, 1.984 for 100 at :math:`c = 0.95`). No scipy: for
    :math:`\nu \le 1000` the exact finite series of :func:`_t_central_probability` is inverted by
    bisection on :math:`\theta \in (0, \pi/2)` to double precision; beyond, the Cornish-Fisher
    expansion (A&S 26.7.5) around the normal quantile :math:`z` (``statistics.NormalDist``),

    .. math:: t \approx z + \frac{g_1(z)}{\nu} + \frac{g_2(z)}{\nu^2} + \frac{g_3(z)}{\nu^3}
              + \frac{g_4(z)}{\nu^4},

    whose error there is below 1e-12. (A 30-row table with 1.96 beyond would be 4% narrow at
    :math:`\nu = 31`.)
    """
    _check_confidence(confidence)
    if dof < 1 or int(dof) != dof:
        raise ValueError(f"dof must be a positive integer, got {dof}")
    dof = int(dof)
    if dof > _EXACT_T_MAX_DOF:
        z = NormalDist().inv_cdf((1.0 + confidence) / 2.0)
        g1 = (z**3 + z) / 4
        g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
        g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
        g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
        return z + g1 / dof + g2 / dof**2 + g3 / dof**3 + g4 / dof**4
    lo, hi = 0.0, math.pi / 2
    while True:  # A is increasing in theta; stop when the bracket cannot shrink any more
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if _t_central_probability(mid, dof) < confidence:
            lo = mid
        else:
            hi = mid
    return math.sqrt(dof) * math.tan(0.5 * (lo + hi))


def t_interval(values: Any, confidence: float = 0.95) -> tuple[float, float]:
    r"""Student-t confidence interval of the mean: :math:`\bar x \pm t_{(1+c)/2,\,n-1}\, s/\sqrt n`,

    with :math:`s` the sample standard deviation (``ddof=1``). Exact for normal data; needs
    :math:`n \ge 2` (with one value the interval is undefined, so this raises ``ValueError``).
    """
    x = _finite_array(values, "values").reshape(-1)
    n = x.size
    if n < 2:
        raise ValueError("t_interval needs at least 2 values")
    mean = float(x.mean())
    half = t_critical(n - 1, confidence) * float(x.std(ddof=1)) / math.sqrt(n)
    return mean - half, mean + half


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------


def aggregate(values: Any, *, reps: int = 2000, seed: int = 0) -> dict[str, Any]:
    r"""Summary of per-seed values, JSON-ready (plain ints, floats and lists; never NaN).

    Keys: ``n``, ``mean``, ``std`` (sample, ``ddof=1``), ``median``, ``iqm`` (:func:`iqm`),
    ``iqm_ci95`` (95% percentile bootstrap, :func:`bootstrap_ci` with ``reps``/``seed``),
    ``mean_ci95`` (95% Student-t, :func:`t_interval`: exact under normality and better calibrated
    than the percentile bootstrap at the usual 3-10 seeds, which undercovers there; note it may
    extend past ``[min, max]``), ``min``, ``max``.

    One value (``n = 1``): ``std`` is 0.0 and both intervals collapse to ``[v, v]`` so the schema
    never changes; a zero width there means "no spread information", not certainty, so read it
    together with ``n``. Empty, non-1-D, NaN or infinite input raises ``ValueError``.
    """
    x = _finite_array(values, "values")
    if x.ndim != 1:
        raise ValueError(f"values must be 1-D per-seed values, got shape {x.shape}")
    n = x.size
    v_iqm = float(iqm(x))
    if n == 1:
        v = float(x[0])
        iqm_ci, mean_ci = (v, v), (v, v)
    else:
        iqm_ci = bootstrap_ci(x, iqm, reps=reps, confidence=0.95, seed=seed)
        mean_ci = t_interval(x, 0.95)
    return {
        "n": int(n),
        "mean": float(x.mean()),
        "std": float(x.std(ddof=1)) if n > 1 else 0.0,
        "median": float(np.median(x)),
        "iqm": v_iqm,
        "iqm_ci95": [float(iqm_ci[0]), float(iqm_ci[1])],
        "mean_ci95": [float(mean_ci[0]), float(mean_ci[1])],
        "min": float(x.min()),
        "max": float(x.max()),
    }


def format_aggregate(agg: dict[str, Any], digits: int = 1) -> str:
    """One line, e.g. ``IQM 498.2 [95% CI 490.1, 500.0] · mean 480.3 ± 40.1 · min 380.0 · n=8``.

    ``±`` is the sample standard deviation (spread of the seeds), not a confidence half width.
    """
    f = lambda v: f"{v:.{digits}f}"
    lo, hi = agg["iqm_ci95"]
    return (
        f"IQM {f(agg['iqm'])} [95% CI {f(lo)}, {f(hi)}] · mean {f(agg['mean'])} ± {f(agg['std'])}"
        f" · min {f(agg['min'])} · n={agg['n']}"
    )


def best_eval(rows: list[dict[str, Any]]) -> float | None:
    """The best mean of the whole evaluations among ``rows`` (an evaluation that stopped at its
    pre-check, ``"precheck": true``, scored few episodes and is not a candidate); None if none."""
    return max((r["eval_mean"] for r in rows if not r.get("precheck")), default=None)
