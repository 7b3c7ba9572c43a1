"""Curves of training runs: accuracy and the curriculum window against epoch."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from matplotlib.figure import Figure

from gainrl_ops.core.plotting import save_png


def plot_runs(epochs: pl.DataFrame, target: Path, title: str = "") -> Path:
    """Two panels for one or more runs (column `run`): accuracy against epoch (rollouts,
    and held-out when measured) and mu (the centre of the sampling window) against epoch."""
    fig = Figure(figsize=(11, 4), dpi=100, layout="constrained")
    accuracy, window = fig.subplots(1, 2)
    for (run,), rows in epochs.sort("epoch").group_by("run", maintain_order=True):
        epoch = (rows["epoch"] + 1).to_list()
        line, = accuracy.plot(epoch, rows["accuracy"].to_list(), marker="o", alpha=0.5, linestyle="--", label=f"{run} rollouts")
        if rows["held_out_accuracy"].drop_nulls().len():
            accuracy.plot(epoch, rows["held_out_accuracy"].to_list(), marker="o", color=line.get_color(), label=f"{run} held-out")
        window.plot(epoch, rows["mu"].to_list(), marker="o", color=line.get_color(), label=run)
    accuracy.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1))
    window.set(xlabel="epoch", ylabel="mu (rank)", title="sampling window centre (mu)")
    accuracy.legend(fontsize=8)
    window.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return save_png(fig, Path(target))
