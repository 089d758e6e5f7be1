"""Tests of reinforce_jax.stats: hand-computed references, scipy as an oracle, bootstrap properties."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from reinforce_jax import stats

try:
    import scipy.stats as sps
except ImportError:  # scipy is not a dependency: the oracle tests skip without it
    sps = None

needs_scipy = pytest.mark.skipif(sps is None, reason="scipy not installed")


# --------------------------------------------------------------------------------------------
# IQM
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([7.0], 7.0),  # m <= 3: nothing trimmed
        ([1.0, 9.0], 5.0),
        ([1.0, 2.0, 30.0], 11.0),
        ([4.0, 1.0, 3.0, 20.0], 3.5),  # m = 4: k = 1, mean(3, 4) (the mean is 7)
        ([4.0, 1.0, 3.0, 2.0, 100.0], 3.0),  # m = 5: k = 1, mean(2, 3, 4)
        ([10.0, 0.0, 1.0, 2.0, 3.0, -50.0], 1.5),  # m = 6: k = 1, mean(0, 1, 2, 3)
        ([7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1000.0], 5.0),  # m = 7: k = 1, mean(3..7)
        ([100.0, -100.0, 3.0, 4.0, 5.0, 6.0, 0.0, 9.0], 4.5),  # m = 8: k = 2, mean(3, 4, 5, 6)
        ([9.0, 1.0, 8.0, 2.0, 7.0, 3.0, 6.0, 4.0, 5.0], 5.0),  # m = 9: k = 2, mean(3..7)
        ([-1e6, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 1e6], 4.5),  # m = 10: k = 2, mean(3..6)
    ],
)
def test_iqm_hand_computed(values, expected):
    assert stats.iqm(values) == pytest.approx(expected, rel=1e-12)
    assert isinstance(stats.iqm(values), float)
    # Order does not matter.
    assert stats.iqm(values[::-1]) == pytest.approx(expected, rel=1e-12)


def test_iqm_axes():
    x = np.array([[4.0, 1.0, 3.0, 20.0], [40.0, 10.0, 30.0, 0.0]])
    np.testing.assert_allclose(stats.iqm(x), [3.5, 20.0])  # last axis by default
    np.testing.assert_allclose(stats.iqm(x, axis=0), [22.0, 5.5, 16.5, 10.0])  # m = 2: means
    # Flattened (rliable's aggregate_iqm): 8 values, k = 2 -> mean(3, 4, 10, 20).
    assert stats.iqm(x, axis=None) == pytest.approx(9.25)
    assert stats.iqm(x, axis=(0, 1)) == pytest.approx(9.25)
    assert stats.iqm(x[None], axis=(-2, -1)) == pytest.approx([9.25])


def test_iqm_rejects_bad_input():
    with pytest.raises(ValueError):
        stats.iqm([1.0, float("nan"), 2.0])
    with pytest.raises(ValueError):
        stats.iqm([])
    with pytest.raises(ValueError):
        stats.iqm([1.0, 2.0], axis=1)


@needs_scipy
@pytest.mark.parametrize("m", range(1, 22))
def test_iqm_matches_scipy_trim_mean(m):
    x = np.random.default_rng(m).standard_cauchy((3, 5, m))  # heavy tails make trimming matter
    np.testing.assert_allclose(stats.iqm(x), sps.trim_mean(x, 0.25, axis=-1), rtol=1e-12)
    np.testing.assert_allclose(stats.iqm(x, axis=None), sps.trim_mean(x, 0.25, axis=None))
    np.testing.assert_allclose(stats.iqm(x, axis=0), sps.trim_mean(x, 0.25, axis=0), rtol=1e-12)


# --------------------------------------------------------------------------------------------
# Bootstrap
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("statistic", [stats.iqm, np.mean, np.median])
@pytest.mark.parametrize("n", [2, 5, 16, 64])
def test_bootstrap_ci_contains_statistic(statistic, n):
    x = np.random.default_rng(n).normal(100.0, 20.0, n)
    lo, hi = stats.bootstrap_ci(x, statistic)
    assert isinstance(lo, float) and isinstance(hi, float)
    assert x.min() <= lo < float(statistic(x)) < hi <= x.max()


def test_bootstrap_ci_narrows_with_more_data():
    rng = np.random.default_rng(0)
    widths = []
    for n in (8, 32, 128):
        lo, hi = stats.bootstrap_ci(rng.normal(0.0, 1.0, n), stats.iqm)
        widths.append(hi - lo)
    # Width shrinks like 1/sqrt(n): each 4x more data should roughly halve it.
    assert widths[1] < 0.75 * widths[0]
    assert widths[2] < 0.75 * widths[1]


def test_bootstrap_ci_wider_at_higher_confidence():
    x = np.random.default_rng(1).normal(size=20)
    lo90, hi90 = stats.bootstrap_ci(x, np.mean, confidence=0.9)
    lo99, hi99 = stats.bootstrap_ci(x, np.mean, confidence=0.99)
    assert lo99 < lo90 < hi90 < hi99


def test_bootstrap_ci_is_deterministic_per_seed():
    x = np.random.default_rng(2).normal(size=12)
    a = stats.bootstrap_ci(x, stats.iqm, seed=7)
    assert stats.bootstrap_ci(x, stats.iqm, seed=7) == a
    assert stats.bootstrap_ci(list(x), stats.iqm, seed=7) == a  # lists are fine
    assert stats.bootstrap_ci(x, stats.iqm, seed=8) != a


def test_bootstrap_unvectorized_statistic_gives_same_interval():
    x = np.random.default_rng(3).normal(size=10)
    vec = stats.bootstrap_ci(x, np.mean, reps=500, seed=4)
    loop = stats.bootstrap_ci(x, lambda s: float(np.mean(s)), reps=500, seed=4, vectorized=False)
    assert loop == pytest.approx(vec, rel=1e-12)


def test_bootstrap_rejects_statistic_that_reduces_everything():
    x = np.arange(10.0)
    with pytest.raises(ValueError, match="shape"):
        stats.bootstrap_ci(x, lambda s, axis: np.mean(s))
    with pytest.raises(ValueError):
        stats.bootstrap_ci(x, np.mean, confidence=1.0)
    with pytest.raises(ValueError):
        stats.bootstrap_ci(x, np.mean, reps=0)
    with pytest.raises(ValueError):
        stats.bootstrap_ci(np.zeros((2, 2, 2)), np.mean)
    with pytest.raises(ValueError):
        stats.bootstrap_ci([1.0, np.inf], np.mean)


def test_bootstrap_chunks_agree_with_one_pass(monkeypatch):
    x = np.random.default_rng(5).normal(size=64)
    one = stats.bootstrap_ci(x, np.mean, reps=4000)
    monkeypatch.setattr(stats, "_CHUNK_ELEMENTS", 64 * 97)  # 97 reps per chunk, ragged last one
    chunked = stats.bootstrap_ci(x, np.mean, reps=4000)
    assert chunked == stats.bootstrap_ci(x, np.mean, reps=4000)
    width = one[1] - one[0]
    assert abs(chunked[0] - one[0]) < 0.1 * width and abs(chunked[1] - one[1]) < 0.1 * width


def test_stratified_resamples_keep_each_task_and_its_run_count():
    runs, tasks, reps = 6, 4, 300
    # Value encodes (task, run): 1000 * task + run.
    x = 1000.0 * np.arange(tasks)[None, :] + np.arange(runs)[:, None]
    r = stats.bootstrap_resamples(x, reps, np.random.default_rng(0))
    assert r.shape == (reps, runs, tasks)
    task_of = r // 1000
    run_of = r % 1000
    np.testing.assert_array_equal(task_of, np.broadcast_to(np.arange(tasks), r.shape))
    assert set(np.unique(run_of)) == set(range(runs))  # with replacement: all runs reachable
    # Drawn independently per task, not one row index shared by all tasks.
    assert not np.all(run_of == run_of[..., :1])
    # And with replacement: some resample repeats a run within a task.
    assert any(len(np.unique(r[b, :, 0])) < runs for b in range(reps))


def test_stratified_bootstrap_ignores_between_task_variation():
    # Task 0 always scores 0, task 1 always 100. Each stratified resample has exactly `runs`
    # values of each task, so the pooled mean is 50 in every resample; a bootstrap over the
    # flattened 10 values would mix the tasks and give a wide interval.
    x = np.column_stack([np.zeros(5), np.full(5, 100.0)])
    assert stats.bootstrap_ci(x, np.mean) == (50.0, 50.0)
    assert stats.bootstrap_ci(x, stats.iqm) == (50.0, 50.0)
    lo, hi = stats.bootstrap_ci(x.reshape(-1), np.mean)
    assert hi - lo > 30.0


def test_stratified_bootstrap_of_aggregate_iqm():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(10, 5)) + np.arange(5)  # [runs, tasks], task offsets
    lo, hi = stats.bootstrap_ci(x, stats.iqm)
    assert lo < stats.iqm(x, axis=None) < hi
    # A statistic with per-task structure: rliable's aggregate_median (median of task means).
    median_of_means = lambda s, axis: np.median(s.mean(axis=-2), axis=-1)
    lo, hi = stats.bootstrap_ci(x, median_of_means)
    assert lo < float(np.median(x.mean(axis=0))) < hi


def test_bootstrap_coverage_on_normal_data():
    # 200 independent experiments with known mean 3: the 95% percentile interval of the mean
    # should cover it in roughly 95% of them (slightly less: the percentile bootstrap undercovers
    # a little at n = 30).
    rng = np.random.default_rng(2021)
    hits = 0
    for trial in range(200):
        lo, hi = stats.bootstrap_ci(rng.normal(3.0, 2.0, 30), np.mean, reps=1000, seed=trial)
        hits += lo <= 3.0 <= hi
    assert 0.90 * 200 <= hits <= 0.99 * 200


# --------------------------------------------------------------------------------------------
# Student t
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dof", "confidence", "expected"),
    [  # printed t tables (three decimals)
        (1, 0.95, 12.706),
        (2, 0.95, 4.303),
        (5, 0.95, 2.571),
        (7, 0.95, 2.365),
        (10, 0.95, 2.228),
        (30, 0.95, 2.042),
        (31, 0.95, 2.040),
        (120, 0.95, 1.980),
        (1, 0.99, 63.657),
        (10, 0.99, 3.169),
        (1, 0.90, 6.314),
        (20, 0.90, 1.725),
        (4, 0.80, 1.533),
        (5000, 0.95, 1.960),
    ],
)
def test_t_critical_matches_tables(dof, confidence, expected):
    assert stats.t_critical(dof, confidence) == pytest.approx(expected, abs=6e-4)


@pytest.mark.parametrize("confidence", [0.5, 0.8, 0.95, 0.99, 0.999])
def test_t_critical_closed_forms(confidence):
    # dof = 1 is Cauchy: tan(pi c / 2); dof = 2: P(|T| <= t) = t / sqrt(2 + t^2).
    assert stats.t_critical(1, confidence) == pytest.approx(
        math.tan(math.pi * confidence / 2), rel=1e-12
    )
    assert stats.t_critical(2, confidence) == pytest.approx(
        confidence * math.sqrt(2.0 / (1.0 - confidence**2)), rel=1e-12
    )


@needs_scipy
@pytest.mark.parametrize("confidence", [0.5, 0.9, 0.95, 0.99, 0.999])
def test_t_critical_matches_scipy(confidence):
    # Both sides of the exact-series / Cornish-Fisher switch at 1000 dof.
    for dof in [*range(1, 41), 63, 100, 999, 1000, 1001, 2000, 10**4, 10**6]:
        expected = sps.t.ppf((1 + confidence) / 2, dof)
        assert stats.t_critical(dof, confidence) == pytest.approx(expected, rel=1e-10), dof


def test_t_interval_hand_computed():
    lo, hi = stats.t_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    half = 2.7764451051977987 * math.sqrt(2.5) / math.sqrt(5)  # t_{.975,4} s / sqrt(n)
    assert (lo, hi) == pytest.approx((3.0 - half, 3.0 + half), rel=1e-12)
    lo99, hi99 = stats.t_interval([1.0, 2.0, 3.0, 4.0, 5.0], confidence=0.99)
    assert lo99 < lo and hi < hi99


def test_t_interval_coverage_on_normal_data():
    # Exact under normality, even at n = 4 where a 1.96 z-interval would cover only ~86%.
    rng = np.random.default_rng(7)
    hits = sum(lo <= 0.0 <= hi for lo, hi in map(stats.t_interval, rng.normal(size=(1000, 4))))
    assert 930 <= hits <= 970


def test_t_interval_rejects_bad_input():
    with pytest.raises(ValueError):
        stats.t_interval([1.0])
    with pytest.raises(ValueError):
        stats.t_interval([1.0, float("nan")])
    with pytest.raises(ValueError):
        stats.t_critical(0)
    with pytest.raises(ValueError):
        stats.t_critical(3, 0.0)


# --------------------------------------------------------------------------------------------
# aggregate / format_aggregate
# --------------------------------------------------------------------------------------------

KEYS = {"n", "mean", "std", "median", "iqm", "iqm_ci95", "mean_ci95", "min", "max"}


def test_aggregate_values():
    x = [500.0, 500.0, 498.0, 380.0, 500.0, 470.0, 495.0, 499.0]
    agg = stats.aggregate(x)
    assert set(agg) == KEYS
    assert agg["n"] == 8 and isinstance(agg["n"], int)
    assert agg["mean"] == pytest.approx(480.25)
    assert agg["std"] == pytest.approx(np.std(x, ddof=1))
    assert agg["median"] == pytest.approx(498.5)
    assert agg["iqm"] == pytest.approx((495 + 498 + 499 + 500) / 4)  # k = 2 trimmed per end
    assert (agg["min"], agg["max"]) == (380.0, 500.0)
    assert agg["iqm_ci95"] == list(stats.bootstrap_ci(x, stats.iqm, seed=0))
    assert agg["mean_ci95"] == list(stats.t_interval(x))
    assert agg["iqm_ci95"][0] <= agg["iqm"] <= agg["iqm_ci95"][1]
    json.dumps(agg, allow_nan=False)  # plain floats/ints/lists only


def test_aggregate_single_value_collapses_without_nan():
    agg = stats.aggregate(np.array([42.5]))
    assert agg == {
        "n": 1,
        "mean": 42.5,
        "std": 0.0,
        "median": 42.5,
        "iqm": 42.5,
        "iqm_ci95": [42.5, 42.5],
        "mean_ci95": [42.5, 42.5],
        "min": 42.5,
        "max": 42.5,
    }
    json.dumps(agg, allow_nan=False)
    assert stats.format_aggregate(agg) == (
        "IQM 42.5 [95% CI 42.5, 42.5] · mean 42.5 ± 0.0 · min 42.5 · n=1"
    )


@pytest.mark.parametrize(
    "bad", [[1.0, float("nan")], [float("nan")], [1.0, float("inf")], [], [[1.0, 2.0]]]
)
def test_aggregate_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        stats.aggregate(bad)


def test_format_aggregate():
    agg = {
        "n": 8,
        "mean": 480.25,
        "std": 40.1,
        "median": 499.0,
        "iqm": 498.2,
        "iqm_ci95": [490.1, 500.0],
        "mean_ci95": [446.7, 513.8],
        "min": 380.0,
        "max": 500.0,
    }
    assert stats.format_aggregate(agg) == (
        "IQM 498.2 [95% CI 490.1, 500.0] · mean 480.2 ± 40.1 · min 380.0 · n=8"
    )
    assert stats.format_aggregate(agg, digits=2).startswith("IQM 498.20 [95% CI 490.10, 500.00]")


def test_best_eval_skips_evaluations_stopped_at_their_precheck():
    rows = [{"eval_mean": 120.0}, {"eval_mean": 480.0, "precheck": True}, {"eval_mean": 300.0}]
    assert stats.best_eval(rows) == 300.0
    assert stats.best_eval(rows[1:2]) is None and stats.best_eval([]) is None
