"""Exact statistics: ranks, (partial) Spearman, bootstrap intervals, top-k overlap."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gainrl_ops.core.stats import (
    Correlation,
    bootstrap_ci,
    correlation,
    partial_spearman,
    rankdata,
    spearman,
    top_k_overlap,
)


def test_rankdata_averages_ties() -> None:
    x = np.array([10.0, 20.0, 20.0, 5.0, 20.0, 7.0])
    # sorted: 5(1) 7(2) 10(3) 20,20,20 -> (4+5+6)/3 = 5
    np.testing.assert_array_equal(rankdata(x), [3.0, 5.0, 5.0, 1.0, 5.0, 2.0])
    np.testing.assert_array_equal(rankdata(np.array([1.0, 1.0])), [1.5, 1.5])
    assert rankdata(np.array([])).size == 0
    # Ranks always sum to n (n + 1) / 2, ties or not.
    r = rankdata(np.random.default_rng(0).integers(0, 5, size=101).astype(float))
    assert r.sum() == pytest.approx(101 * 102 / 2)


def test_rankdata_rejects_nan() -> None:
    with pytest.raises(ValueError):
        rankdata(np.array([1.0, math.nan]))


def test_spearman_monotone_and_reversed() -> None:
    x = np.linspace(0.1, 5.0, 50)
    assert spearman(x, np.exp(x) + x**3) == pytest.approx(1.0)
    assert spearman(x, -np.log(x)) == pytest.approx(-1.0)


def test_spearman_independent_is_near_zero() -> None:
    rng = np.random.default_rng(123)
    x, y = rng.normal(size=2000), rng.normal(size=2000)
    assert abs(spearman(x, y)) < 0.06


def test_spearman_hand_computed_example() -> None:
    # No ties: rho = 1 - 6 sum d^2 / (n (n^2 - 1)).
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    y = np.array([2.0, 1.0, 4.0, 3.0, 5.0])
    # d = (-1, 1, -1, 1, 0), sum d^2 = 4 -> 1 - 24 / 120 = 0.8
    assert spearman(x, y) == pytest.approx(0.8)
    # With a tie: ranks x = 1,2,3,4 ; y = (2, 2, 1, 4) -> ranks 2.5, 2.5, 1, 4
    # dx = -1.5,-.5,.5,1.5 ; dy = 0,0,-1.5,1.5 -> cov = 1.5, var_x = 5, var_y = 4.5
    expected = 1.5 / math.sqrt(5.0 * 4.5)
    assert spearman([1, 2, 3, 4], [2, 2, 1, 4]) == pytest.approx(expected)


def test_spearman_drops_nan_pairs_and_degenerate_cases() -> None:
    x = np.array([1.0, 2.0, math.nan, 3.0, 4.0])
    y = np.array([1.0, 2.0, 100.0, 3.0, math.nan])
    assert spearman(x, y) == pytest.approx(1.0)  # (1,1) (2,2) (3,3) remain
    assert math.isnan(spearman([1.0, 2.0], [1.0, 2.0]))  # fewer than 3 pairs
    assert math.isnan(spearman([1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 3.0, 4.0]))  # constant side
    assert math.isnan(spearman([0.1] * 5, [1.0, 2.0, 3.0, 4.0, 5.0]))


def test_partial_spearman_removes_common_driver() -> None:
    rng = np.random.default_rng(7)
    n = 3000
    z = rng.normal(size=n)
    x = z + 0.5 * rng.normal(size=n)
    y = z + 0.5 * rng.normal(size=n)
    assert spearman(x, y) > 0.5
    assert abs(partial_spearman(x, y, z)) < 0.08
    # 2-D z with an irrelevant extra control gives the same answer.
    z2 = np.column_stack([z, rng.normal(size=n)])
    assert abs(partial_spearman(x, y, z2)) < 0.08


def test_partial_spearman_keeps_direct_dependence() -> None:
    rng = np.random.default_rng(8)
    n = 3000
    z = rng.normal(size=n)
    x = z + rng.normal(size=n)
    y = z + x + rng.normal(size=n)
    assert partial_spearman(x, y, z) > 0.3


def test_partial_spearman_exactly_explained_is_nan() -> None:
    z = np.arange(20.0)
    assert math.isnan(partial_spearman(z, z**2, z))


def test_bootstrap_ci_covers_known_correlation_and_is_deterministic() -> None:
    rho = 0.5
    true_spearman = 6 / math.pi * math.asin(rho / 2)  # ~0.483 for a bivariate normal
    rng = np.random.default_rng(2024)
    xy = rng.multivariate_normal([0.0, 0.0], [[1.0, rho], [rho, 1.0]], size=500)
    est, low, high = bootstrap_ci(spearman, xy[:, 0], xy[:, 1], n_boot=500, seed=3)
    assert low < est < high
    assert low <= true_spearman <= high
    assert high - low < 0.2
    assert (est, low, high) == bootstrap_ci(spearman, xy[:, 0], xy[:, 1], n_boot=500, seed=3)
    assert (est, low, high) != bootstrap_ci(spearman, xy[:, 0], xy[:, 1], n_boot=500, seed=4)


def test_bootstrap_ci_ignores_nan_replicates() -> None:
    # Resamples of a 4-row table with one odd value are often constant -> nan replicates.
    x = np.array([0.0, 0.0, 0.0, 1.0])
    _, low, high = bootstrap_ci(
        lambda a: float(a.std()) if a.std() > 0 else math.nan, x, n_boot=200, seed=0
    )
    assert math.isfinite(low) and math.isfinite(high)
    assert 0.0 < low <= high


def test_correlation_and_significance() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=400)
    y = x + rng.normal(size=400)
    c = correlation(x, y, n_boot=300)
    assert c.n == 400 and c.significant and c.low > 0
    noise = correlation(x, rng.normal(size=400), n_boot=300)
    assert not noise.significant
    z = rng.normal(size=400)
    partial = correlation(z + x, z + y, z=z, n_boot=300)
    assert partial.significant and partial.n == 400


def test_correlation_dataclass() -> None:
    c = Correlation(0.42, 0.31, 0.52, 500)
    assert c.significant
    assert str(c) == "0.42 [0.31, 0.52] (n=500)"
    assert Correlation(-0.3, -0.5, -0.1, 50).significant
    assert not Correlation(0.1, -0.05, 0.2, 50).significant
    assert not Correlation(math.nan, math.nan, math.nan, 2).significant
    with pytest.raises(AttributeError):
        c.estimate = 0.0  # type: ignore[misc]


def test_top_k_overlap() -> None:
    a = ["a", "b", "c", "d", "e"]
    b = ["b", "a", "e", "c", "d"]
    assert top_k_overlap(a, b, 2) == 1.0
    assert top_k_overlap(a, b, 3) == pytest.approx(2 / 3)
    assert top_k_overlap(a, list(reversed(a)), 2) == 0.0
    with pytest.raises(ValueError):
        top_k_overlap(a, b, 0)
