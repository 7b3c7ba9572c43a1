"""Pass rates: seeded sampling, the counts behind each rate, the store, and the report's agreement section."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import polars as pl
import pytest
import torch

from exact import float64_model
from gainrl_ops.core.keys import ScoresKey
from gainrl_ops.core.layout import Layout
from gainrl_ops.curriculum.rankings import ranking_agreement
from gainrl_ops.curriculum.report import PASS_RATES_HINT, build_report
from gainrl_ops.data.prompts import PromptConfig, render_prompts
from gainrl_ops.difficulty.config import PassRateConfig
from gainrl_ops.difficulty.pass_rates import (
    GumbelSampling,
    estimate_pass_rates,
    pass_rate_rows,
    sample_completions,
    sample_prompts,
)
from gainrl_ops.difficulty.store import publish_pass_rates, read_pass_rates, with_ranks
from gainrl_ops.scoring.models import ModelSpec, load_model, load_tokenizer
from gainrl_ops.scoring.publish import ScoreContext
from gainrl_ops.training.evaluation import Decoded
from pipelines.defs.difficulty.assets import PassRatesConfig
from pipelines.resources import unexposed

QUESTIONS = [f"What is {a} plus {b}?" for a, b in ((1, 2), (3, 4), (2, 2), (5, 1), (0, 7), (4, 4))]


@pytest.fixture(scope="module")
def tiny(tiny_model_path: Path):
    return load_model(ModelSpec(str(tiny_model_path), dtype="float32")), load_tokenizer(str(tiny_model_path))


def _prompts(tokenizer, answers: list[str] | None = None) -> pl.DataFrame:
    rendered = render_prompts(tokenizer, QUESTIONS, PromptConfig())
    return pl.DataFrame({
        "id": [f"q{i}" for i in range(len(QUESTIONS))],
        "answer": answers or [str(eval(q[8:-1].replace("plus", "+"))) for q in QUESTIONS],
        "input_ids": [r.input_ids for r in rendered],
    })


def test_gumbel_sampling_draws_tokens_in_proportion_to_the_softmax() -> None:
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    rows = 4000
    sampler = GumbelSampling(range(rows), temperature=2.0, device=torch.device("cpu"))
    drawn = sampler(torch.zeros(rows, 1, dtype=torch.long), logits.expand(rows, -1).clone()).argmax(dim=-1)
    expected = torch.softmax(logits / 2.0, dim=-1).numpy() * rows
    observed = np.bincount(drawn.numpy(), minlength=4)
    # chi-square with 3 degrees of freedom: 16.27 is its 0.999 quantile
    assert ((observed - expected) ** 2 / expected).sum() < 16.27


def test_pass_rate_is_the_fraction_of_completions_the_reward_counts_correct() -> None:
    texts = ["#### 3", "#### 4", "no answer", "#### 3", "#### 7", "#### 7", "#### 7", "#### 7"]
    completions = Decoded(texts, tokens=[1, 2, 3, 4, 5, 6, 7, 8], seconds=[0.5] * 8)
    rows = pass_rate_rows(["a", "b"], ["3", "7"], completions, k=4)
    assert rows.to_dicts() == [
        {"id": "a", "pass_rate": 0.5, "learnability": 0.25, "n_correct": 2, "k": 4, "completion_tokens": 10, "generation_seconds": 2.0},
        {"id": "b", "pass_rate": 1.0, "learnability": 0.0, "n_correct": 4, "k": 4, "completion_tokens": 26, "generation_seconds": 2.0},
    ]
    with pytest.raises(ValueError, match="7 completions for 2 prompts and k = 4"):
        pass_rate_rows(["a", "b"], ["3", "7"], Decoded(texts[:7], [0] * 7, [0.0] * 7), k=4)


def test_a_seeded_sample_depends_on_the_seed_and_the_ids_not_their_order() -> None:
    prompts = pl.DataFrame({"id": [f"p{i:03d}" for i in range(100)], "answer": ["1"] * 100})
    first = sample_prompts(prompts, 10, seed=0)["id"].to_list()
    assert sample_prompts(prompts.reverse(), 10, seed=0)["id"].to_list() == first == sorted(first)
    assert sample_prompts(prompts, 10, seed=1)["id"].to_list() != first
    assert sample_prompts(prompts, None, seed=0).height == sample_prompts(prompts, 500, seed=0).height == 100


def test_pass_rates_are_deterministic_by_seed(tiny) -> None:
    model, tokenizer = tiny
    prompts = _prompts(tokenizer)
    config = PassRateConfig(k=8, max_new_tokens=12, seed=0)
    first, again = (estimate_pass_rates(model, tokenizer, prompts, config).drop("generation_seconds") for _ in range(2))
    assert first.equals(again)
    assert first["learnability"].to_list() == [p * (1 - p) for p in first["pass_rate"].to_list()]

    draws = {seed: sample_completions(model, tokenizer, prompts["id"].to_list(), prompts["input_ids"].to_list(), PassRateConfig(k=8, max_new_tokens=12, seed=seed)).texts
             for seed in (0, 1)}
    assert draws[0] != draws[1]
    assert len(set(draws[0])) > len(QUESTIONS)  # the k completions of a prompt differ: sampled, not greedy


@pytest.mark.numerics
def test_a_prompts_completions_do_not_depend_on_the_prompts_batched_with_it(tiny_model_path: Path) -> None:
    model = float64_model(load_model(ModelSpec(str(tiny_model_path), dtype="float32")))
    tokenizer = load_tokenizer(str(tiny_model_path))
    prompts = _prompts(tokenizer)
    ids, input_ids = prompts["id"].to_list(), prompts["input_ids"].to_list()
    together = sample_completions(model, tokenizer, ids, input_ids, PassRateConfig(k=4, max_new_tokens=12, batch_size=24)).texts
    alone = sample_completions(model, tokenizer, ids[2:3], input_ids[2:3], PassRateConfig(k=4, max_new_tokens=12, batch_size=3)).texts
    assert alone == together[8:12]


def test_answers_the_model_cannot_give_have_pass_rate_zero(tiny) -> None:
    model, tokenizer = tiny
    rows = estimate_pass_rates(model, tokenizer, _prompts(tokenizer, ["\\text{never}"] * len(QUESTIONS)), PassRateConfig(k=4, max_new_tokens=12))
    assert rows["pass_rate"].to_list() == [0.0] * len(QUESTIONS) and rows["n_correct"].sum() == 0
    assert (rows["completion_tokens"] >= 4).all() and (rows["generation_seconds"] > 0).all()
    sampled = estimate_pass_rates(model, tokenizer, _prompts(tokenizer), PassRateConfig(k=4, max_new_tokens=12, sample=3, seed=5))
    assert sampled["id"].to_list() == sample_prompts(_prompts(tokenizer), 3, 5)["id"].to_list()


def _published(root: Path, rates: dict[str, float], k: int = 4) -> tuple[Layout, ScoresKey]:
    layout, key = Layout(root), ScoresKey("arith", "0123456789abcdef", "fedcba9876543210", "00112233445566aa")
    n = np.array([round(p * k) for p in rates.values()])
    rows = pl.DataFrame({
        "id": list(rates), "pass_rate": n / k, "learnability": n / k * (1 - n / k), "n_correct": n.astype(np.int32), "k": [k] * len(n),
        "completion_tokens": [10] * len(n), "generation_seconds": [0.1] * len(n), "n_tokens": [20] * len(n), "truncated": [False] * len(n),
    }, schema_overrides={"k": pl.Int32})
    context = ScoreContext(key.dataset, key.version, key.checkpoint, "base", "tok", key.prompt_fingerprint, "float32")
    publish_pass_rates(layout, key, rows, context, PassRateConfig(k=k), "code")
    return layout, key


def test_published_pass_rates_are_ranked_and_read_back_by_prompt_id(tmp_path: Path) -> None:
    rates = {"a": 0.25, "b": 1.0, "c": 0.5, "d": 0.0, "e": 0.5}
    layout, key = _published(tmp_path, rates)
    stored = pl.read_parquet(layout.pass_rates(key)).sort("id")
    assert stored["pass_rate_rank"].to_list() == [4, 1, 2, 5, 3]  # highest pass rate first, ties by id
    assert stored["learnability_rank"].to_list() == [3, 4, 1, 5, 2]
    assert set(stored["checkpoint"]) == {key.checkpoint} and set(stored["dtype"]) == {"float32"}
    assert read_pass_rates(layout, key.dataset, key.checkpoint, key.version) == rates
    with pytest.raises(FileNotFoundError, match="no pass rates of checkpoint ffff.*job estimate_difficulty"):
        read_pass_rates(layout, key.dataset, "ffff", key.version)


def test_with_ranks_on_literals() -> None:
    ranked = with_ranks(pl.DataFrame({"id": ["x", "y", "z"], "pass_rate": [0.5, 0.5, 0.875], "learnability": [0.25, 0.25, 0.109375]}))
    assert ranked.select("pass_rate_rank", "learnability_rank", "n_prompts").rows() == [(2, 1, 3), (3, 2, 3), (1, 3, 3)]


def test_the_dagster_config_exposes_every_library_field() -> None:
    assert unexposed(PassRateConfig, PassRatesConfig) == set()
    assert PassRatesConfig(sample=256).library == PassRateConfig(sample=256)


def _ranked(n: int = 200, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    score = rng.normal(size=n)
    return pl.DataFrame({
        "id": [f"p{i:03d}" for i in range(n)], "angle_score": score, "c_intra": score, "c_inter": score * 0,
        "n_tokens": rng.integers(10, 50, size=n),
    }).with_columns(rank=pl.col("angle_score").rank("ordinal", descending=True).cast(pl.Int64))


def test_report_agreement_with_pass_rates_that_follow_the_angle(tmp_path: Path) -> None:
    current = _ranked()
    # A sample of 80 prompts whose pass rate rises with the angle score: the two rankings agree.
    sample = current.sort("angle_score").tail(80).with_row_index("order")
    rates = sample.select("id", pass_rate=pl.col("order") / 79, learnability=pl.col("order") / 79 * (1 - pl.col("order") / 79))
    report = build_report(current, tmp_path, pass_rates=rates)
    by_signal = {found.signal: found for found in report.agreement}
    assert by_signal["pass_rate"].n == 80 and by_signal["pass_rate"].k == 8
    assert by_signal["pass_rate"].spearman.estimate == pytest.approx(1.0)
    assert by_signal["pass_rate"].top_k_overlap == 1.0 and by_signal["pass_rate"].chance_overlap == 0.1
    # learnability peaks at p = 0.5, the middle of the angle order: its top k are none of the angle's.
    assert by_signal["learnability"].top_k_overlap == 0.0
    assert abs(by_signal["learnability"].spearman.estimate) < 0.1
    meta = report.as_metadata()
    assert meta["pass_rate_spearman"] == pytest.approx(1.0) and meta["pass_rates"] == "angle ranking against pass rates over 80 prompts"
    assert report.agreement_table()["signal"].to_list() == ["pass_rate", "learnability"]
    assert report.plots["score_vs_pass_rate"].read_bytes()[:4] == b"\x89PNG"


def test_report_without_pass_rates_says_how_to_get_them(tmp_path: Path) -> None:
    report = build_report(_ranked(), tmp_path)
    assert report.agreement == () and report.agreement_table().height == 0
    assert report.as_metadata()["pass_rates"] == PASS_RATES_HINT and "estimate_difficulty" in PASS_RATES_HINT


def test_pass_rates_asset_publishes_a_seeded_sample_that_sql_ranks_and_the_report_compares(tmp_path: Path, tiny_model_path: Path) -> None:
    from test_pipeline import ALL, RESCORE, _checks_passed, _prepare, _resources

    with dg.instance_for_test() as instance:
        partition = _prepare(instance, tmp_path, tiny_model_path)
        config = {"ops": {"pass_rates": {"config": {"sample": 24, "k": 4, "max_new_tokens": 16, "seed": 3}}}}
        result = dg.materialize(
            ALL, selection=["pass_rates"], partition_key=partition, instance=instance, resources=_resources(tmp_path, tiny_model_path), run_config=config
        )
        assert result.success and _checks_passed(result) == {"every_sampled_prompt_once": True, "pass_rates_consistent": True}
        (event,) = result.get_asset_materialization_events()
        meta = event.step_materialization_data.materialization.metadata
        assert (meta["dagster/row_count"].value, meta["k"].value, meta["sample"].value) == (24, 4, 24)
        assert meta["plot"].value.startswith("![") and Path(meta["path"].value).exists()

        rescored = dg.materialize(ALL, selection=RESCORE, partition_key=partition, instance=instance, resources=_resources(tmp_path, tiny_model_path))
        report = next(e for e in rescored.get_asset_materialization_events() if e.asset_key.to_user_string() == "curriculum_report")
        report_meta = report.step_materialization_data.materialization.metadata
        assert report_meta["pass_rates"].value == "angle ranking against pass rates over 24 prompts"
        assert "learnability" in report_meta["pass_rate_agreement"].value and "pass_rate_spearman" in report_meta

    with duckdb.connect(str(Layout(tmp_path).catalog), read_only=True) as con:
        sources = con.execute("SELECT source, count(*), min(rank), max(rank) FROM rankings WHERE ranking = ? GROUP BY source ORDER BY source", [partition]).fetchall()
        same_key = con.execute(
            "SELECT count(*) FROM pass_rates p JOIN scores s USING (dataset, dataset_version, prompt_fingerprint, checkpoint, id) "
            "WHERE p.checkpoint = ? AND p.n_tokens = s.n_tokens AND p.seed = 3 AND p.k = 4", [partition]
        ).fetchall()
    assert sources == [("angle", 60, 1, 60), ("learnability", 24, 1, 24), ("pass_rate", 24, 1, 24)]
    assert same_key == [(24,)]
    agreement = ranking_agreement(Layout(tmp_path), "arithmetic").filter(pl.col("a") == f"angle:{partition}", pl.col("b") == f"pass_rate:{partition}")
    assert agreement["prompts"].to_list() == [24]


def test_republishing_replaces_the_estimate_and_sweeps_what_a_killed_publish_left(tmp_path: Path) -> None:
    layout, key = _published(tmp_path, {"a": 0.25, "b": 1.0})
    left = layout.pass_rates(key).parent.with_name(f".{layout.pass_rates(key).parent.name}.abcd1234")
    left.mkdir()
    (left / "pass_rates.parquet").write_bytes(b"half")
    _published(tmp_path, {"a": 0.5, "c": 0.0})
    assert read_pass_rates(layout, key.dataset, key.checkpoint, key.version) == {"a": 0.5, "c": 0.0}
    assert not left.exists()
