"""Small, exact statistics for curriculum reports and diagnostics (numpy only, no scipy).

Everything here is deterministic: resampling uses a seeded `numpy.random.Generator`, so a
report built twice from the same data shows the same intervals.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Correlation",
    "bootstrap_ci",
    "correlation",
    "finite_or_none",
    "partial_spearman",
    "pearson",
    "rankdata",
    "spearman",
    "top_k_overlap",
]

# Below this many complete pairs a rank correlation says nothing useful.
_MIN_PAIRS = 3


def finite_or_none(value: float | None) -> float | None:
    """`value` as a float, or None when it is None, NaN or infinite (JSON and Dagster
    metadata have no NaN)."""
    return None if value is None or not math.isfinite(value) else float(value)


def rankdata(x: np.ndarray) -> np.ndarray:
    """Average ranks, 1-based: tied values share the mean of the ranks they occupy.

    For sorted positions p..q-1 (0-based) holding equal values, each gets rank (p + 1 + q) / 2.
    The input must be NaN-free (NaN has no place in an order); a 1-D float array is returned.
    """
    a = np.asarray(x, dtype=float).ravel()
    if a.size and np.isnan(a).any():
        raise ValueError("rankdata: input contains NaN; drop or impute missing values first")
    n = a.size
    ranks = np.empty(n, dtype=float)
    if n == 0:
        return ranks
    # A stable sort keeps ties contiguous; group boundaries are where the sorted value changes.
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    starts = np.flatnonzero(np.r_[True, sorted_a[1:] != sorted_a[:-1]])
    ends = np.r_[starts[1:], n]
    group_rank = (starts + 1 + ends) / 2.0
    ranks[order] = np.repeat(group_rank, ends - starts)
    return ranks


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation r = sum(dx * dy) / sqrt(sum(dx^2) * sum(dy^2)), dx = x - mean(x).

    Returns nan for fewer than 3 values or when either side is constant.
    """
    a = np.asarray(x, dtype=float).ravel()
    b = np.asarray(y, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"pearson: length mismatch {a.size} != {b.size}")
    if a.size < _MIN_PAIRS:
        return math.nan
    da = a - a.mean()
    db = b - b.mean()
    # Constant up to rounding: the mean of equal floats can differ from them by an ulp, so
    # compare the spread with the magnitude instead of testing for exact zero.
    if _is_flat(da, a) or _is_flat(db, b):
        return math.nan
    r = float(da @ db) / math.sqrt(float(da @ da) * float(db @ db))
    # Rounding can push |r| a hair past 1.
    return max(-1.0, min(1.0, r))


def _is_flat(centered: np.ndarray, raw: np.ndarray, rel: float = 1e-12) -> bool:
    """True when `centered` (raw minus its mean) is zero relative to the magnitude of `raw`."""
    spread = float(np.abs(centered).max())
    return spread <= rel * max(float(np.abs(raw).max()), np.finfo(float).tiny)


def _complete_rows(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Drop every row in which any of the arrays (1-D, or 2-D by row) holds a NaN."""
    cols = [np.asarray(a, dtype=float) for a in arrays]
    n = cols[0].shape[0]
    for c in cols:
        if c.shape[0] != n:
            raise ValueError(f"length mismatch: {c.shape[0]} != {n}")
    keep = np.ones(n, dtype=bool)
    for c in cols:
        keep &= ~np.isnan(c.reshape(n, -1)).any(axis=1)
    return tuple(c[keep] for c in cols)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation: the Pearson correlation of the average ranks of x and y.

    rho = pearson(rank(x), rank(y)); with ties this is the exact tie-corrected value (the
    textbook 1 - 6 sum d^2 / (n (n^2 - 1)) holds only without ties). Pairs with a NaN on
    either side are dropped; returns nan with fewer than 3 pairs or a constant side.
    """
    a, b = _complete_rows(np.ravel(x), np.ravel(y))
    if a.size < _MIN_PAIRS:
        return math.nan
    return pearson(rankdata(a), rankdata(b))


def partial_spearman(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> float:
    """Partial Spearman correlation of x and y controlling for z (1-D, or 2-D [n, k]).

    With R(.) the average ranks (each column of z ranked separately) and
    Z = [1, R(z_1), ..., R(z_k)], the residuals e_x = R(x) - Z b_x and e_y = R(y) - Z b_y of
    the least-squares fits give rho_xy.z = pearson(e_x, e_y). Rows with a NaN anywhere are
    dropped; returns nan when fewer than k + 3 rows remain or a residual is constant
    (x or y fully explained by z).
    """
    zz = np.asarray(z, dtype=float)
    if zz.ndim == 1:
        zz = zz[:, None]
    if zz.ndim != 2:
        raise ValueError(f"partial_spearman: z must be 1-D or 2-D, got shape {zz.shape}")
    a, b, zz = _complete_rows(np.ravel(x), np.ravel(y), zz)
    n, k = zz.shape
    # Each control costs a degree of freedom; keep at least 3 for the residual correlation.
    if n < k + _MIN_PAIRS:
        return math.nan
    design = np.column_stack([np.ones(n), *(rankdata(zz[:, j]) for j in range(k))])
    targets = np.column_stack([rankdata(a), rankdata(b)])
    coef, *_ = np.linalg.lstsq(design, targets, rcond=None)
    resid = targets - design @ coef
    # If z explains x or y exactly, the residual is rounding noise (~1e-13 of the rank scale);
    # correlating noise would give a meaningless number, so report nan instead.
    if _is_flat(resid[:, 0], targets[:, 0], 1e-9) or _is_flat(resid[:, 1], targets[:, 1], 1e-9):
        return math.nan
    return pearson(resid[:, 0], resid[:, 1])


def bootstrap_ci(
    stat: Callable[..., float],
    *arrays: np.ndarray,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Percentile bootstrap: (estimate, low, high) for `stat(*arrays)`.

    Each replicate draws n row indices with replacement (i_1..i_n ~ U{0..n-1}) and applies the
    same indices to every array, so paired structure is kept. low and high are the
    (1 - level) / 2 and (1 + level) / 2 quantiles of the replicates; NaN replicates (e.g. a
    resample with a constant side) are ignored. Deterministic for a fixed seed.
    """
    if not arrays:
        raise ValueError("bootstrap_ci: need at least one array")
    if not 0.0 < level < 1.0:
        raise ValueError(f"bootstrap_ci: level must be in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"bootstrap_ci: n_boot must be >= 1, got {n_boot}")
    arrs = [np.asarray(a) for a in arrays]
    n = arrs[0].shape[0]
    if any(a.shape[0] != n for a in arrs):
        raise ValueError("bootstrap_ci: arrays must have the same number of rows")
    estimate = float(stat(*arrs))
    if n == 0:
        return estimate, math.nan, math.nan
    rng = np.random.default_rng(seed)
    reps = np.empty(n_boot, dtype=float)
    for i in range(n_boot):
        idx = rng.integers(0, n, size=n)
        reps[i] = stat(*(a[idx] for a in arrs))
    reps = reps[~np.isnan(reps)]
    if reps.size == 0:
        return estimate, math.nan, math.nan
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(reps, [alpha, 1.0 - alpha])
    return estimate, float(low), float(high)


def top_k_overlap(ids_a_ranked: Sequence[str], ids_b_ranked: Sequence[str], k: int) -> float:
    """|top_k(a) ∩ top_k(b)| / k, where top_k is the first k ids of a best-first list.

    1.0 means the same k prompts head both rankings (order within the k is ignored).
    """
    if k < 1:
        raise ValueError(f"top_k_overlap: k must be >= 1, got {k}")
    top_a = set(list(ids_a_ranked)[:k])
    top_b = set(list(ids_b_ranked)[:k])
    return len(top_a & top_b) / k


@dataclass(frozen=True)
class Correlation:
    """A correlation estimate with its percentile-bootstrap interval and number of pairs."""

    estimate: float
    low: float
    high: float
    n: int

    @property
    def significant(self) -> bool:
        """True when the interval [low, high] excludes 0 (a NaN interval is never significant)."""
        if math.isnan(self.low) or math.isnan(self.high):
            return False
        return self.low > 0.0 or self.high < 0.0

    def __str__(self) -> str:
        return f"{self.estimate:.2f} [{self.low:.2f}, {self.high:.2f}] (n={self.n})"


def correlation(
    x: np.ndarray,
    y: np.ndarray,
    *,
    z: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Correlation:
    """Spearman correlation of x and y (partial Spearman controlling for z when given),
    with a percentile-bootstrap interval at `level`. n counts the complete rows used."""
    if z is None:
        a, b = _complete_rows(np.ravel(x), np.ravel(y))
        est, low, high = bootstrap_ci(spearman, a, b, n_boot=n_boot, level=level, seed=seed)
        return Correlation(est, low, high, int(a.size))
    zz = np.asarray(z, dtype=float)
    if zz.ndim == 1:
        zz = zz[:, None]
    a, b, zz = _complete_rows(np.ravel(x), np.ravel(y), zz)
    est, low, high = bootstrap_ci(
        partial_spearman, a, b, zz, n_boot=n_boot, level=level, seed=seed
    )
    return Correlation(est, low, high, int(a.size))
