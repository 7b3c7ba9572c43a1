"""Helpers every plot shares: numeric columns as arrays, and PNGs written atomically.

Plots are drawn on `matplotlib.figure.Figure` objects directly, never through pyplot, so no
global figure registry or backend switch is touched (safe inside Dagster workers and threads).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from matplotlib.figure import Figure

from gainrl_ops.core.storage import atomic_path

DPI = 100


def float_column(df: pl.DataFrame, col: str) -> np.ndarray:
    """Column as float64 with nulls as NaN (polars nulls would otherwise become objects)."""
    return df.get_column(col).cast(pl.Float64).fill_null(float("nan")).to_numpy()


def save_png(fig: Figure, target: Path) -> Path:
    """Write `fig` to `target` through a temporary file, so a reader never sees half a PNG."""
    with atomic_path(target) as tmp:
        # The temporary name ends in .tmp, so the format must be given explicitly.
        fig.savefig(tmp, format="png", dpi=DPI)
    return Path(target)
