"""Per-checkpoint curriculum report: numbers and PNG plots from a synthetic curriculum."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from gainrl_ops.curriculum.report import CurriculumReport, build_report

PNG_MAGIC = b"\x89PNG"


def _curriculum(n: int = 400, seed: int = 0, with_difficulty: bool = True) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    difficulty = rng.integers(1, 5, size=n).astype(float)
    n_tokens = rng.integers(20, 300, size=n)
    # Harder prompts score lower (negative Spearman); longer prompts score a bit higher.
    c_intra = 0.6 - 0.05 * difficulty + 0.0003 * n_tokens + rng.normal(0, 0.03, n)
    c_inter = 0.1 - 0.01 * difficulty + rng.normal(0, 0.01, n)
    score = c_intra + 8 * c_inter
    df = pl.DataFrame(
        {
            "id": [f"p{i:04d}" for i in range(n)],
            "angle_score": score,
            "c_intra": c_intra,
            "c_inter": c_inter,
            "n_tokens": n_tokens,
            "difficulty": difficulty if with_difficulty else [None] * n,
        },
        schema_overrides={"difficulty": pl.Float64},
    )
    return df.with_columns(
        pl.col("angle_score").rank(method="ordinal", descending=True).cast(pl.Int64).alias("rank")
    )


def _previous(current: pl.DataFrame, seed: int = 1) -> pl.DataFrame:
    """An earlier checkpoint: scores perturbed so the ranking is similar but permuted."""
    rng = np.random.default_rng(seed)
    noisy = current["angle_score"].to_numpy() + rng.normal(0, 0.1, current.height)
    prev = current.with_columns(pl.Series("angle_score", noisy))
    prev = prev.with_columns(
        pl.col("angle_score").rank(method="ordinal", descending=True).cast(pl.Int64).alias("rank")
    )
    # One prompt is new in this checkpoint's dataset; agreement uses shared ids only.
    return prev.filter(pl.col("id") != "p0000")


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:4] == PNG_MAGIC


def test_full_report_writes_four_plots(tmp_path: Path) -> None:
    current = _curriculum()
    report = build_report(current, tmp_path / "report", previous=_previous(current))
    assert isinstance(report, CurriculumReport)
    names = {"score_histogram", "score_vs_length", "score_vs_difficulty", "rank_vs_previous"}
    assert set(report.plots) == names
    for name, path in report.plots.items():
        assert path == tmp_path / "report" / f"{name}.png"
        assert _is_png(path)
    # No temporary files left behind by the atomic writes.
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == sorted(
        f"{n}.png" for n in names
    )

    assert report.n_prompts == 400
    assert report.k == 40
    assert report.n_common_previous == 399
    meta = report.as_metadata()
    for key in (
        "score_mean", "score_std", "score_min", "score_max", "spearman_length",
        "spearman_difficulty", "rank_spearman_previous", "top_k_overlap_previous",
    ):
        value = meta[key]
        assert isinstance(value, float) and math.isfinite(value), key
    assert meta["n_prompts"] == 400 and meta["k"] == 40
    assert meta["score_min"] <= meta["score_mean"] <= meta["score_max"]
    assert meta["score_std"] > 0
    assert meta["spearman_difficulty"] < -0.5  # harder -> lower score
    assert meta["spearman_length"] > 0
    assert 0.5 < meta["rank_spearman_previous"] < 1.0  # similar, not identical
    assert 0.0 < meta["top_k_overlap_previous"] <= 1.0
    assert meta["plot_rank_vs_previous"] == str(report.plots["rank_vs_previous"])
    # Flat scalars only: Dagster metadata values.
    assert all(v is None or isinstance(v, (int, float, str)) for v in meta.values())


def test_identical_previous_agrees_perfectly(tmp_path: Path) -> None:
    current = _curriculum(n=100)
    report = build_report(current, tmp_path, previous=current.reverse(), k=7)
    assert report.k == 7
    assert report.rank_spearman_previous == pytest.approx(1.0)
    assert report.top_k_overlap_previous == 1.0


def test_report_without_previous_or_difficulty(tmp_path: Path) -> None:
    current = _curriculum(with_difficulty=False)
    report = build_report(current, tmp_path)
    assert set(report.plots) == {"score_histogram", "score_vs_length"}
    assert all(_is_png(p) for p in report.plots.values())
    assert not (tmp_path / "score_vs_difficulty.png").exists()
    assert not (tmp_path / "rank_vs_previous.png").exists()
    assert report.spearman_difficulty is None
    assert report.rank_spearman_previous is None
    assert report.top_k_overlap_previous is None
    meta = report.as_metadata()
    assert meta["spearman_difficulty"] is None and meta["rank_spearman_previous"] is None
    assert meta["top_k_overlap_previous"] is None
    assert math.isfinite(meta["spearman_length"])


def test_report_without_difficulty_column_and_continuous_difficulty(tmp_path: Path) -> None:
    current = _curriculum(n=200)
    no_col = build_report(current.drop("difficulty"), tmp_path / "a")
    assert no_col.spearman_difficulty is None
    # Continuous difficulty (many distinct values) is binned rather than one box per value.
    cont = current.with_columns(
        (pl.col("difficulty") + pl.Series(np.linspace(0, 0.9, 200))).alias("difficulty")
    )
    report = build_report(cont, tmp_path / "b")
    assert _is_png(report.plots["score_vs_difficulty"])
    assert report.spearman_difficulty is not None and report.spearman_difficulty < 0


def test_report_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        build_report(_curriculum().head(0), tmp_path)
    with pytest.raises(ValueError, match="lacks columns"):
        build_report(_curriculum().drop("n_tokens"), tmp_path)
