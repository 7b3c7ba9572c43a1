"""Shared-prefix scoring: the tokens every prompt of a shard starts with are run once, and
the scores equal those of a full prefill of every prompt."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from exact import EXACT, float64_model
from test_prompts import QUESTIONS, SYSTEM, TOKENIZERS
from transformers import (
    AutoModelForCausalLM,
    MistralConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from gainrl_ops.core.keys import ScoresKey
from gainrl_ops.core.layout import Layout
from gainrl_ops.data.arithmetic import ArithmeticConfig, generate
from gainrl_ops.data.datasets import problem_id
from gainrl_ops.data.prompts import PromptConfig, render_prompts
from gainrl_ops.data.shards import tokenize_to_shards
from gainrl_ops.scoring.angles import AngleScores
from gainrl_ops.scoring.capture import run_prefix
from gainrl_ops.scoring.models import (
    ModelSpec,
    checkpoint_fingerprint,
    load_model,
    load_tokenizer,
)
from gainrl_ops.scoring.plan import ScoringPlan
from gainrl_ops.scoring.scorer import (
    ScoreConfig,
    score_and_publish,
    score_batch,
    shard_prefix,
)

FEW_SHOT = (("What is 1 + 1?", "1 + 1 = 2\n#### 2"), ("Tom has 3 pens and buys 2 more. How many pens?", "3 + 2 = 5\n#### 5"))
# Short enough that the metaspace test tokenizers (a 300-token vocabulary) share a prefix above it.
LOW_MIN = ScoreConfig(min_prefix_tokens=4)
# Shared prefix and full prefill are the same maths: in float64 they agree to rounding on any CPU
# (in float32 they differ by ~5e-7 here and up to 2e-4 on other kernels; in bfloat16 by ~1e-3).
pytestmark = pytest.mark.numerics


@pytest.fixture(scope="module")
def model(tiny_model_path: Path) -> PreTrainedModel:
    return float64_model(load_model(ModelSpec(str(tiny_model_path), dtype="float64")))


@pytest.fixture(scope="module")
def chatml(tiny_model_path: Path) -> PreTrainedTokenizerBase:
    return load_tokenizer(str(tiny_model_path))


@pytest.fixture(params=list(TOKENIZERS))
def tokenizer(request: pytest.FixtureRequest, chatml: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    return chatml if request.param == "chatml" else TOKENIZERS[request.param]()


def _questions() -> list[str]:
    return [p.problem for p in generate(ArithmeticConfig(n_problems=14, seed=4, max_steps=3))] + QUESTIONS


def _args(tokenizer: PreTrainedTokenizerBase, config: PromptConfig) -> tuple[list, list, list]:
    rendered = render_prompts(tokenizer, _questions(), config)
    return [r.input_ids for r in rendered], [r.system_span for r in rendered], [r.question_span for r in rendered]


def assert_same_scores(a: AngleScores, b: AngleScores) -> None:
    for name in ("c_intra", "c_inter", "angle_score"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), atol=EXACT, rtol=0, equal_nan=True)


@pytest.mark.parametrize("few_shot", [(), FEW_SHOT], ids=["no_shot", "two_shots"])
def test_shared_prefix_scores_equal_full_prefill_on_every_template(model, tokenizer, few_shot) -> None:
    ids, systems, questions = _args(tokenizer, PromptConfig(system_prompt=SYSTEM, few_shot=few_shot))
    assert len({len(row) for row in ids}) > 5, "one batch of mixed lengths, so the suffixes are padded"
    prefix, note = shard_prefix(model, ids, [q[0] for q in questions], LOW_MIN)
    assert prefix is not None, note
    # The prefix holds the system prompt's start (and every few-shot turn) and stops at or before every question.
    assert min(s[0] for s in systems) < len(prefix.input_ids) <= min(q[0] for q in questions)
    if few_shot:
        assert len(prefix.input_ids) > max(s[1] for s in systems) + 10
    assert_same_scores(score_batch(model, ids, systems, questions, prefix=prefix), score_batch(model, ids, systems, questions))


def test_system_span_running_past_the_prefix_is_summed_whole(model, chatml) -> None:
    ids, systems, questions = _args(chatml, PromptConfig(system_prompt=SYSTEM))
    start, end = systems[0]
    assert end - start > 3
    prefix = run_prefix(model, ids[0][: start + 2])  # the system prompt's first two tokens, the rest in each suffix
    shared = score_batch(model, ids, systems, questions, prefix=prefix)
    assert_same_scores(shared, score_batch(model, ids, systems, questions))
    assert (shared.c_inter != 0).all()


def test_prefix_that_a_prompt_does_not_start_with_is_refused(model, chatml) -> None:
    ids, systems, questions = _args(chatml, PromptConfig(system_prompt=SYSTEM))
    prefix = run_prefix(model, ids[0][:5])
    with pytest.raises(ValueError, match="start with the shared prefix"):
        score_batch(model, [[ids[0][0] + 1, *ids[0][1:]], *ids[1:]], systems, questions, prefix=prefix)


def _mistral(vocab: int, sliding_window: int) -> PreTrainedModel:
    torch.manual_seed(0)
    config = MistralConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, sliding_window=sliding_window,
    )
    return float64_model(AutoModelForCausalLM.from_config(config)).eval()


def test_sliding_window_model_shares_what_its_cache_keeps(chatml) -> None:
    """Prompts longer than the window: the prefix is cut to what the cache holds whole, and
    the suffix still attends only within the window, as in the full prefill."""
    ids, systems, questions = _args(chatml, PromptConfig(system_prompt=SYSTEM, few_shot=FEW_SHOT))
    model = _mistral(len(chatml), sliding_window=32)
    assert min(len(row) for row in ids) > 32
    prefix, note = shard_prefix(model, ids, [q[0] for q in questions], LOW_MIN)
    assert prefix is not None and len(prefix.input_ids) == 31, note
    assert_same_scores(score_batch(model, ids, systems, questions, prefix=prefix), score_batch(model, ids, systems, questions))

    small, note = shard_prefix(_mistral(len(chatml), sliding_window=8), ids, [q[0] for q in questions], ScoreConfig())
    assert small is None and "8-token sliding window" in note


def test_checkpoint_saved_with_use_cache_off_still_shares(model, chatml) -> None:
    """Trainers save `use_cache: false`; the prefix run asks for the cache explicitly."""
    ids, systems, questions = _args(chatml, PromptConfig(system_prompt=SYSTEM))
    model.config.use_cache = False
    try:
        prefix, note = shard_prefix(model, ids, [q[0] for q in questions], LOW_MIN)
        assert prefix is not None, note
        assert_same_scores(score_batch(model, ids, systems, questions, prefix=prefix), score_batch(model, ids, systems, questions))
    finally:
        model.config.use_cache = True


def test_model_without_a_dynamic_cache_runs_whole_prompts(model, chatml, monkeypatch) -> None:
    ids, _, questions = _args(chatml, PromptConfig(system_prompt=SYSTEM))
    monkeypatch.setattr(type(model), "_supports_default_dynamic_cache", classmethod(lambda cls: False))
    prefix, note = shard_prefix(model, ids, [q[0] for q in questions], ScoreConfig())
    assert prefix is None and "does not run on a DynamicCache" in note


def _table(n: int) -> pa.Table:
    problems = generate(ArithmeticConfig(n_problems=n, seed=21, max_steps=2))
    return pa.table({"id": [problem_id(p.problem) for p in problems], "problem": [p.problem for p in problems]})


def _scores(folder: Path) -> dict[str, tuple[float, float, float]]:
    rows = pa.concat_tables([pq.read_table(p) for p in sorted((folder / "parts").glob("part-*.parquet"))]).to_pylist()
    return {r["id"]: (r["c_intra"], r["c_inter"], r["angle_score"]) for r in rows}


def test_scoring_records_the_mode_and_the_full_prefill_fallback_agrees(model, chatml, tiny_model_path: Path, tmp_path: Path) -> None:
    shards = tokenize_to_shards(_table(40), chatml, PromptConfig(few_shot=FEW_SHOT[:1]), Layout(tmp_path), "d", "0123456789abcdef", shard_size=16)
    key = ScoresKey("d", "0123456789abcdef", shards.prompt_fingerprint, checkpoint_fingerprint(str(tiny_model_path)))
    # The same shards scored into two storage roots, once sharing the prefix and once not.
    plans = {mode: ScoringPlan(tmp_path / mode, key, shards, "tiny", str(tiny_model_path), "float64") for mode in ("shared", "whole")}
    shared = score_and_publish(model, plans["shared"], ScoreConfig(max_batch_tokens=512), progress=False)
    whole = score_and_publish(model, plans["whole"], ScoreConfig(max_batch_tokens=512, min_prefix_tokens=10_000), progress=False)

    assert len(shared.prefix_tokens) == 3 and min(shared.prefix_tokens) > 40 and shared.prefix_notes == ("", "", "")
    assert shared.scoring_mode.startswith("shared prefix on 3 of 3 shards")
    assert whole.prefix_tokens == (0, 0, 0) and all("fewer than min_prefix_tokens=10000" in note for note in whole.prefix_notes)
    assert whole.scoring_mode.startswith("full prefill on 3 of 3 shards (the prompts share")
    assert json.loads((plans["shared"].final / "summary.json").read_text())["prefix_tokens"] == list(shared.prefix_tokens)

    a, b = _scores(plans["shared"].final), _scores(plans["whole"].final)
    assert a.keys() == b.keys() and len(a) == 40
    for key in a:
        assert a[key] == pytest.approx(b[key], abs=EXACT)


def test_plain_prompts_without_a_system_prompt_fall_back_to_full_prefill(model) -> None:
    """Without a template or system prompt the prompts share only "Question:"."""
    ids, systems, questions = _args(TOKENIZERS["plain_text"](), PromptConfig(system_prompt=""))
    prefix, note = shard_prefix(model, ids, [q[0] for q in questions], ScoreConfig())
    assert prefix is None and "fewer than min_prefix_tokens=16" in note
