"""The curricula benchmark's statistics, on literal runs: what its table and JSON claim."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_training import area, half_of, summarise, to_target  # noqa: E402


def _run(arm: str, seed: int, area_: float, final: float, cpu: float = 100.0) -> dict:
    return {"arm": arm, "seed": seed, "area": area_, "final": final, "epochs_to_target": 3, "seconds_to_target": 10.0,
            "reached": True, "cpu_seconds": cpu, "gain_per_cpu_hour": (final - 0.3) / (cpu / 3600)}


def test_the_difference_to_uniform_is_paired_by_seed() -> None:
    # Seeds move both arms together (a hard seed is hard for both): paired, the lead of 0.01 is
    # certain; unpaired, the seed-to-seed spread of 0.1 would swamp it.
    rows = [_run("uniform", s, 0.3 + 0.1 * s, 0.4) for s in range(10)]
    rows += [_run("gainrl", s, 0.31 + 0.1 * s, 0.4) for s in reversed(range(10))]
    summary = summarise(rows, ["gainrl", "uniform"], n_boot=2000)
    difference = summary["vs_uniform"]["gainrl"]["area"]
    assert difference["difference"] == pytest.approx(0.01)
    assert difference["low"] == pytest.approx(0.01) and difference["high"] == pytest.approx(0.01)
    assert summary["gainrl"]["area"]["high"] - summary["gainrl"]["area"]["low"] > 0.3
    assert "uniform" not in summary["vs_uniform"]


def test_an_arm_run_on_other_seeds_gets_no_paired_difference() -> None:
    rows = [_run("uniform", s, 0.3, 0.4) for s in range(3)] + [_run("pool", s, 0.3, 0.4) for s in range(1, 4)]
    assert "pool" not in summarise(rows, ["pool", "uniform"], n_boot=100)["vs_uniform"]


def test_a_run_that_never_reaches_the_target_is_censored_at_one_more_epoch() -> None:
    assert to_target([0.30, 0.45, 0.50], [10.0, 20.0, 30.0], 0.44, overhead=5.0) == (2, 25.0, True)
    assert to_target([0.30, 0.35, 0.40], [10.0, 20.0, 30.0], 0.44, overhead=5.0) == (4, 35.0 * 4 / 3, False)


def test_area_is_the_mean_of_the_trapezoids_from_the_base() -> None:
    assert area([0.4, 0.6], base=0.2) == pytest.approx(((0.2 + 0.4) / 2 + (0.4 + 0.6) / 2) / 2)


def test_half_keeps_the_ranked_order_and_depends_on_the_seed() -> None:
    pl = pytest.importorskip("polars")
    ranked = pl.DataFrame({"id": [f"p{i}" for i in range(100)], "rank": list(range(100))})
    half = half_of(ranked, seed=3)
    assert half.height == 50 and half["rank"].is_sorted()
    assert half.equals(half_of(ranked, seed=3)) and not half.equals(half_of(ranked, seed=4))
