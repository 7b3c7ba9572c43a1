"""Per-checkpoint curriculum report: summary numbers plus a few PNG plots.

The report answers the questions a user asks about a freshly scored checkpoint: what do the
scores look like, are they just a proxy for prompt length, do they track labelled difficulty
(high score should mean easier, so a negative correlation is expected), and how much did the
ranking move since the previous checkpoint; and, when the checkpoint has pass rates, how the
angle ranking agrees with the reward-based rankings (pass rate, learnability p(1 - p)) over the
prompts they cover, beyond what prompt length explains.

Plots go through `core.plotting`: Figure objects (no pyplot) and atomic PNG writes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
from matplotlib.figure import Figure

from gainrl_ops.core.plotting import DPI, float_column, save_png
from gainrl_ops.core.stats import Correlation, correlation, finite_or_none, spearman, top_k_overlap

__all__ = ["PASS_RATES_HINT", "PLOT_NAMES", "REQUIRED_COLUMNS", "SIGNALS", "CurriculumReport", "SignalAgreement", "build_report", "signal_agreement"]

REQUIRED_COLUMNS: tuple[str, ...] = ("id", "angle_score", "c_intra", "c_inter", "n_tokens", "rank")
# File stems of the plots, in the order they are written.
PLOT_NAMES: tuple[str, ...] = (
    "score_histogram",
    "score_vs_length",
    "score_vs_difficulty",
    "rank_vs_previous",
    "score_vs_pass_rate",
)
# Reward-based signals the angle ranking is compared with. Both point the angle's way: a higher
# pass rate is an easier prompt, as a higher angle score is one trained first.
SIGNALS: tuple[str, ...] = ("pass_rate", "learnability")
PASS_RATES_HINT = (
    "no pass rates for this checkpoint: materialize pass_rates for its partition (job estimate_difficulty) "
    "to compare the angle ranking with the pass-rate and learnability rankings"
)

# With more distinct difficulty values than this, difficulty is treated as continuous and
# binned into quantiles: one box per value would be unreadable.
_MAX_DIFFICULTY_LEVELS = 12
_DIFFICULTY_BINS = 8


@dataclass(frozen=True)
class SignalAgreement:
    """How the angle ranking agrees with one reward-based `signal` over the `n` prompts both rank.

    spearman: of angle_score with the signal; partial_given_length: the same with prompt length
    (n_tokens) partialled out, both with bootstrap intervals; top_k_overlap: the share of the k
    highest angle scores among the k highest signal values (ties by id), k = max(1, n // 10);
    a random ranking overlaps k / n on average.
    """

    signal: str
    n: int
    spearman: Correlation
    partial_given_length: Correlation
    top_k_overlap: float
    k: int

    @property
    def chance_overlap(self) -> float:
        return self.k / self.n

    def as_row(self) -> dict[str, object]:
        return {
            "signal": self.signal, "prompts": self.n, "spearman": finite_or_none(self.spearman.estimate),
            "spearman_low": finite_or_none(self.spearman.low), "spearman_high": finite_or_none(self.spearman.high),
            "partial_given_length": finite_or_none(self.partial_given_length.estimate),
            "partial_low": finite_or_none(self.partial_given_length.low), "partial_high": finite_or_none(self.partial_given_length.high),
            "top_k": self.k, "top_k_overlap": self.top_k_overlap, "chance_overlap": self.chance_overlap,
        }


@dataclass(frozen=True)
class CurriculumReport:
    """Summary of one checkpoint's curriculum; `plots` maps plot name -> PNG path written."""

    n_prompts: int
    score_mean: float
    score_std: float
    score_min: float
    score_max: float
    spearman_length: float
    spearman_difficulty: float | None
    rank_spearman_previous: float | None
    top_k_overlap_previous: float | None
    k: int
    n_common_previous: int | None = None
    # Agreement with the pass-rate signals, or why there is none (`PASS_RATES_HINT`).
    agreement: tuple[SignalAgreement, ...] = ()
    agreement_note: str = PASS_RATES_HINT
    # A plain dict (not a read-only proxy) so the report pickles, e.g. as a Dagster output.
    plots: dict[str, Path] = field(default_factory=dict)

    def agreement_table(self) -> pl.DataFrame:
        """One row per signal: prompts, Spearman and partial Spearman given length with their
        intervals, top-k overlap and its chance level (no rows without pass rates)."""
        return pl.DataFrame([found.as_row() for found in self.agreement], schema=_AGREEMENT_SCHEMA)

    def as_metadata(self) -> dict[str, float | int | str | None]:
        """Flat values for Dagster asset metadata (plot paths as `plot_<name>` strings).

        Non-finite floats become None: NaN is not valid JSON and renders badly in the UI.
        """
        meta: dict[str, float | int | str | None] = {
            "n_prompts": self.n_prompts,
            "score_mean": finite_or_none(self.score_mean),
            "score_std": finite_or_none(self.score_std),
            "score_min": finite_or_none(self.score_min),
            "score_max": finite_or_none(self.score_max),
            "spearman_length": finite_or_none(self.spearman_length),
            "spearman_difficulty": finite_or_none(self.spearman_difficulty),
            "rank_spearman_previous": finite_or_none(self.rank_spearman_previous),
            "top_k_overlap_previous": finite_or_none(self.top_k_overlap_previous),
            "k": self.k,
            "n_common_previous": self.n_common_previous,
            "pass_rates": self.agreement_note,
        }
        for found in self.agreement:
            meta[f"{found.signal}_spearman"] = finite_or_none(found.spearman.estimate)
            meta[f"{found.signal}_partial_given_length"] = finite_or_none(found.partial_given_length.estimate)
            meta[f"{found.signal}_top_k_overlap"] = found.top_k_overlap
        for name, path in self.plots.items():
            meta[f"plot_{name}"] = str(path)
        return meta


_AGREEMENT_SCHEMA = {
    "signal": pl.String, "prompts": pl.Int64, "spearman": pl.Float64, "spearman_low": pl.Float64, "spearman_high": pl.Float64,
    "partial_given_length": pl.Float64, "partial_low": pl.Float64, "partial_high": pl.Float64, "top_k": pl.Int64,
    "top_k_overlap": pl.Float64, "chance_overlap": pl.Float64,
}


def signal_agreement(current: pl.DataFrame, pass_rates: pl.DataFrame, n_boot: int = 1000, seed: int = 0) -> tuple[SignalAgreement, ...]:
    """`SignalAgreement` of the angle ranking `current` (id, angle_score, n_tokens, rank) with each
    signal of `pass_rates` (id, pass_rate, learnability) over the ids in both; none when no id is."""
    joined = current.select(pl.col("id").cast(pl.Utf8), "angle_score", "n_tokens", "rank").join(
        pass_rates.select(pl.col("id").cast(pl.Utf8), *SIGNALS), on="id", how="inner"
    )
    n = joined.height
    if n == 0:
        return ()
    k = max(1, n // 10)
    angle, length = float_column(joined, "angle_score"), float_column(joined, "n_tokens")
    by_angle = _ids_best_first(joined)
    found = []
    for signal in SIGNALS:
        value = float_column(joined, signal)
        by_signal = joined.sort([pl.col(signal), pl.col("id")], descending=[True, False])["id"].to_list()
        found.append(SignalAgreement(
            signal, n,
            correlation(angle, value, n_boot=n_boot, seed=seed),
            correlation(angle, value, z=length, n_boot=n_boot, seed=seed),
            top_k_overlap(by_angle, by_signal, k), k,
        ))
    return tuple(found)


def _check_columns(df: pl.DataFrame, what: str) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{what} curriculum lacks columns {missing}; has {df.columns}")


def _ids_best_first(df: pl.DataFrame) -> list[str]:
    # Tie-break on id so the order (and hence top-k) does not depend on row order.
    return df.sort(["rank", "id"]).get_column("id").cast(pl.Utf8).to_list()


def _fmt(v: float | None) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.3f}"


def _finite(a: np.ndarray) -> np.ndarray:
    return a[np.isfinite(a)]


def _plot_histograms(df: pl.DataFrame, target: Path) -> Path:
    fig = Figure(figsize=(12, 3.8), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, 3)
    panels = (
        ("angle_score", "score = C_intra + w·C_inter", "tab:blue"),
        ("c_intra", "C_intra (question–question)", "tab:green"),
        ("c_inter", "C_inter (question–system)", "tab:orange"),
    )
    for ax, (col, title, color) in zip(axes, panels):
        values = _finite(float_column(df, col))
        ax.set_title(title)
        ax.set_xlabel(col)
        ax.set_ylabel("prompts")
        if values.size == 0:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
            continue
        # ~sqrt(n) bins, capped: enough shape for 7k prompts without comb artefacts.
        bins = int(min(60, max(10, math.sqrt(values.size))))
        ax.hist(values, bins=bins, color=color, alpha=0.85)
        ax.axvline(float(values.mean()), color="black", linestyle="--", linewidth=1,
                   label=f"mean {values.mean():.3f}")
        ax.legend(loc="upper right", fontsize="small")
    fig.suptitle(f"Angle-concentration distributions (n={df.height})")
    return save_png(fig, target)


def _plot_length(df: pl.DataFrame, rho: float, target: Path) -> Path:
    fig = Figure(figsize=(6.5, 4.8), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    x = float_column(df, "n_tokens")
    y = float_column(df, "angle_score")
    ok = np.isfinite(x) & np.isfinite(y)
    # Small translucent markers keep thousands of points legible.
    ax.scatter(x[ok], y[ok], s=6, alpha=0.4, edgecolors="none")
    ax.set_xlabel("prompt length (tokens)")
    ax.set_ylabel("angle score")
    ax.set_title(f"Score vs prompt length — Spearman ρ = {_fmt(rho)}")
    ax.grid(True, alpha=0.3)
    return save_png(fig, target)


def _difficulty_groups(diff: np.ndarray, score: np.ndarray) -> tuple[list[str], list[np.ndarray]]:
    """Scores grouped by difficulty level, or by quantile bin when difficulty is continuous."""
    levels = np.unique(diff)
    if levels.size <= _MAX_DIFFICULTY_LEVELS:
        labels = [f"{lv:g}" for lv in levels]
        return labels, [score[diff == lv] for lv in levels]
    edges = np.unique(np.quantile(diff, np.linspace(0, 1, _DIFFICULTY_BINS + 1)))
    # Interior edges only: digitize then maps values to bins 0..len(edges)-2, max included.
    idx = np.digitize(diff, edges[1:-1], right=True)
    labels = [f"{edges[i]:.3g}–{edges[i + 1]:.3g}" for i in range(edges.size - 1)]
    return labels, [score[idx == i] for i in range(edges.size - 1)]


def _plot_difficulty(diff: np.ndarray, score: np.ndarray, rho: float, target: Path, what: str = "difficulty") -> Path:
    fig = Figure(figsize=(6.5, 4.8), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    labels, groups = _difficulty_groups(diff, score)
    positions = np.arange(1, len(groups) + 1)
    nonempty = [i for i, g in enumerate(groups) if g.size]
    ax.boxplot([groups[i] for i in nonempty], positions=positions[nonempty], widths=0.6,
               showfliers=False)
    # Jittered strip on top of the boxes shows how many prompts each level holds.
    rng = np.random.default_rng(0)
    for pos, g in zip(positions, groups):
        jitter = rng.uniform(-0.18, 0.18, size=g.size)
        ax.scatter(pos + jitter, g, s=5, alpha=0.3, edgecolors="none", color="tab:blue")
    ax.set_xticks(positions, labels, rotation=30 if len(labels) > 6 else 0)
    ax.set_xlabel(what)
    ax.set_ylabel("angle score")
    ax.set_title(f"Score by {what} — Spearman ρ = {_fmt(rho)}")
    ax.grid(True, axis="y", alpha=0.3)
    return save_png(fig, target)


def _plot_rank_vs_previous(
    rank_now: np.ndarray, rank_prev: np.ndarray, rho: float, overlap: float, k: int, target: Path
) -> Path:
    fig = Figure(figsize=(6.5, 6.0), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    ax.scatter(rank_prev, rank_now, s=6, alpha=0.4, edgecolors="none")
    if rank_now.size:
        hi = float(max(rank_now.max(), rank_prev.max()))
        ax.plot([1, hi], [1, hi], color="grey", linestyle="--", linewidth=1, label="unchanged")
        ax.legend(loc="upper left", fontsize="small")
    ax.set_xlabel("rank at previous checkpoint (1 = highest score)")
    ax.set_ylabel("rank now (1 = highest score)")
    ax.set_title(
        # Two lines: both numbers on one line overflow the figure width.
        f"Rank vs previous checkpoint\nSpearman ρ = {_fmt(rho)}, "
        f"top-{k} overlap = {_fmt(overlap)}"
    )
    ax.grid(True, alpha=0.3)
    return save_png(fig, target)


def build_report(
    current: pl.DataFrame,
    out_dir: Path,
    previous: pl.DataFrame | None = None,
    k: int | None = None,
    pass_rates: pl.DataFrame | None = None,
) -> CurriculumReport:
    """Compute the summary numbers and write the PNG plots of one checkpoint's curriculum.

    `current` (and `previous`) need columns id, angle_score, c_intra, c_inter, n_tokens, rank
    (1 = highest score) and optionally difficulty (may be all null). k defaults to
    max(1, n // 10) and is capped at n. Rank agreement with `previous` is the Spearman
    correlation of the two ranks over ids present in both; top-k overlap compares the first
    k ids of each full ranking (did the prompts trained on first change?).
    With `pass_rates` (id, pass_rate, learnability of the same checkpoint, e.g. a seeded sample),
    the angle ranking is compared with both signals over the prompts they cover
    (`signal_agreement`); without, the report says how to get them (`PASS_RATES_HINT`).
    Writes score_histogram.png and score_vs_length.png always, score_vs_difficulty.png when
    any difficulty is present, rank_vs_previous.png when `previous` is given, and
    score_vs_pass_rate.png when `pass_rates` share prompts with `current`.
    """
    _check_columns(current, "current")
    if previous is not None:
        _check_columns(previous, "previous")
    n = current.height
    if n == 0:
        raise ValueError("current curriculum is empty: nothing to report")
    if k is None:
        k = max(1, n // 10)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    k = min(k, n)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots: dict[str, Path] = {}

    score = float_column(current, "angle_score")
    finite_score = _finite(score)
    if finite_score.size:
        stats = (
            float(finite_score.mean()),
            # Population std (ddof=0): describes this set of prompts, not a sample of them.
            float(finite_score.std()),
            float(finite_score.min()),
            float(finite_score.max()),
        )
    else:
        stats = (math.nan,) * 4

    rho_len = spearman(score, float_column(current, "n_tokens"))
    plots["score_histogram"] = _plot_histograms(current, out_dir / "score_histogram.png")
    plots["score_vs_length"] = _plot_length(current, rho_len, out_dir / "score_vs_length.png")

    rho_diff: float | None = None
    if "difficulty" in current.columns:
        diff = float_column(current, "difficulty")
        ok = np.isfinite(diff) & np.isfinite(score)
        if ok.any():
            rho_diff = spearman(score[ok], diff[ok])
            plots["score_vs_difficulty"] = _plot_difficulty(
                diff[ok], score[ok], rho_diff, out_dir / "score_vs_difficulty.png"
            )

    rho_prev: float | None = None
    overlap: float | None = None
    n_common: int | None = None
    if previous is not None:
        joined = current.select(pl.col("id").cast(pl.Utf8), pl.col("rank").alias("rank_now")).join(
            previous.select(pl.col("id").cast(pl.Utf8), pl.col("rank").alias("rank_prev")),
            on="id",
            how="inner",
        )
        n_common = joined.height
        rank_now = float_column(joined, "rank_now")
        rank_prev = float_column(joined, "rank_prev")
        rho_prev = spearman(rank_now, rank_prev)
        overlap = top_k_overlap(_ids_best_first(current), _ids_best_first(previous), k)
        plots["rank_vs_previous"] = _plot_rank_vs_previous(
            rank_now, rank_prev, rho_prev, overlap, k, out_dir / "rank_vs_previous.png"
        )

    agreement: tuple[SignalAgreement, ...] = ()
    note = PASS_RATES_HINT
    if pass_rates is not None:
        agreement = signal_agreement(current, pass_rates)
        if agreement:
            note = f"angle ranking against pass rates over {agreement[0].n} prompts"
            rated = current.join(pass_rates.select(pl.col("id").cast(current.schema["id"]), "pass_rate"), on="id", how="inner")
            rate, angle = float_column(rated, "pass_rate"), float_column(rated, "angle_score")
            ok = np.isfinite(rate) & np.isfinite(angle)
            plots["score_vs_pass_rate"] = _plot_difficulty(
                rate[ok], angle[ok], agreement[0].spearman.estimate, out_dir / "score_vs_pass_rate.png", what="pass rate"
            )
        else:
            note = "the pass rates of this checkpoint share no prompt with its ranking"

    return CurriculumReport(
        n_prompts=n,
        score_mean=stats[0],
        score_std=stats[1],
        score_min=stats[2],
        score_max=stats[3],
        spearman_length=rho_len,
        spearman_difficulty=rho_diff,
        rank_spearman_previous=rho_prev,
        top_k_overlap_previous=overlap,
        k=k,
        n_common_previous=n_common,
        agreement=agreement,
        agreement_note=note,
        plots=plots,
    )
