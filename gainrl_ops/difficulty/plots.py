"""The pass-rate histogram: how many prompts the checkpoint solves in 0, 1, ..., k of k tries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from matplotlib.figure import Figure

from gainrl_ops.core.plotting import DPI, float_column, save_png


def plot_pass_rates(rows: pl.DataFrame, k: int, target: Path) -> Path:
    """One bar per possible pass rate (0, 1/k, ..., 1), with the learnability p(1 - p) on a second axis."""
    fig = Figure(figsize=(6.5, 4.2), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    levels = np.arange(k + 1) / k
    counts = np.bincount(np.rint(float_column(rows, "pass_rate") * k).astype(int), minlength=k + 1)
    ax.bar(levels, counts, width=0.8 / k, color="tab:blue", alpha=0.85)
    ax.set_xlabel(f"pass rate ({k} samples per prompt)")
    ax.set_ylabel("prompts")
    learn = ax.twinx()
    learn.plot(levels, levels * (1 - levels), color="tab:orange", marker="o", linewidth=1)
    learn.set_ylabel("learnability p(1 - p)", color="tab:orange")
    learn.set_ylim(0, 0.27)
    mean = float(rows["pass_rate"].mean() or 0.0)
    ax.set_title(f"Pass rates of {rows.height} prompts, mean {mean:.3f}")
    ax.grid(True, axis="y", alpha=0.3)
    return save_png(fig, target)
