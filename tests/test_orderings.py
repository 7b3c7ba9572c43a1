"""Control orders for the curriculum (length, difficulty), read from the catalog without a model run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from gainrl_ops.core.layout import Layout
from gainrl_ops.curriculum.catalog import refresh_catalog
from gainrl_ops.curriculum.ranking import ordered_prompts
from gainrl_ops.data.arithmetic import ArithmeticConfig
from gainrl_ops.data.prompts import PromptConfig
from gainrl_ops.data.shards import tokenize_to_shards
from gainrl_ops.data.sources import DatasetSource, prepare_dataset
from gainrl_ops.scoring.models import load_tokenizer
from gainrl_ops.training.config import TrainingRunConfig


def _catalog(source: DatasetSource, root: Path, model_path: Path) -> tuple[Layout, str, str]:
    layout = Layout(root)
    loaded, label = prepare_dataset(source, layout)
    shards = tokenize_to_shards(loaded.table, load_tokenizer(str(model_path)), PromptConfig(), layout, source.name, label.version)
    refresh_catalog(root)
    return layout, label.version, shards.prompt_fingerprint


@pytest.fixture
def arithmetic(tmp_path: Path, tiny_model_path: Path) -> tuple[Layout, str, str]:
    return _catalog(DatasetSource(generator=ArithmeticConfig(n_problems=80, seed=21, max_steps=3)), tmp_path / "root", tiny_model_path)


def test_length_order_is_shortest_question_first_in_tokens_ties_by_id(arithmetic: tuple[Layout, str, str]) -> None:
    layout, version, fingerprint = arithmetic
    frame = ordered_prompts(layout, "arithmetic", version, fingerprint, "length")
    # Independently: the question spans straight from the shard files the tokenizer wrote.
    shards = pl.read_parquet(layout.shards("arithmetic", version, fingerprint) / "shard-*.parquet")
    expected = shards.select("id", length=pl.col("question_end") - pl.col("question_start")).sort("length", "id")
    assert frame["id"].to_list() == expected["id"].to_list()
    assert frame["question_tokens"].to_list() == expected["length"].to_list()
    assert frame["rank"].to_list() == list(range(1, 81)) and frame["question_tokens"].n_unique() > 5
    assert frame["answer"].null_count() == 0


def test_difficulty_order_is_easiest_first_ties_by_id(arithmetic: tuple[Layout, str, str]) -> None:
    layout, version, fingerprint = arithmetic
    frame = ordered_prompts(layout, "arithmetic", version, fingerprint, "difficulty")
    prompts = pl.read_parquet(layout.prompts("arithmetic", version)).sort("difficulty", "id")
    assert frame["id"].to_list() == prompts["id"].to_list()
    assert frame["difficulty"].to_list() == sorted(frame["difficulty"].to_list()) and frame["difficulty"].n_unique() == 3


def test_difficulty_needs_a_difficulty_column(tmp_path: Path, tiny_model_path: Path) -> None:
    data = tmp_path / "plain.jsonl"
    data.write_text("".join(json.dumps({"problem": f"What is {i} + 2?", "answer": str(i + 2)}) + "\n" for i in range(12)))
    layout, version, fingerprint = _catalog(DatasetSource(path=str(data), name="plain"), tmp_path / "root", tiny_model_path)
    with pytest.raises(ValueError, match=r"prompts.parquet: dataset 'plain' has no difficulty .* use sampler length or gainrl"):
        ordered_prompts(layout, "plain", version, fingerprint, "difficulty")
    assert ordered_prompts(layout, "plain", version, fingerprint, "length").height == 12


def test_length_and_difficulty_runs_move_gainrl_s_window_over_their_order() -> None:
    for sampler in ("length", "difficulty"):
        run = TrainingRunConfig(name="r", sampler=sampler, subset_size=8, sigma_frac=0.05, n_frac=0.1, adj_max_frac=0.5)
        assert run.ordering == sampler and run.uses_feedback
        curriculum = run.make_sampler(400)
        assert np.median(curriculum.select(0)) < 40, "epoch 0 draws from the front of the order"
        curriculum.update(accuracy=1.0, angle=0.3)
        assert curriculum.mu == pytest.approx(40 * (np.tanh(1.0) + np.tanh(0.6)))
    assert TrainingRunConfig(name="r", sampler="uniform").ordering == "angle"
