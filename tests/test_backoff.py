"""Out-of-memory back-off of the scorer, with the out-of-memory injected on the CPU: the scores
equal an uninjected run's, the log says so, and a prompt that cannot fit alone is one line."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from exact import EXACT, float64_model

from gainrl_ops.core.keys import ScoresKey
from gainrl_ops.core.layout import Layout
from gainrl_ops.data.arithmetic import ArithmeticConfig, generate
from gainrl_ops.data.datasets import problem_id
from gainrl_ops.data.prompts import PromptConfig
from gainrl_ops.data.shards import tokenize_to_shards
from gainrl_ops.scoring.models import ModelSpec, checkpoint_fingerprint, load_model, load_tokenizer
from gainrl_ops.scoring.plan import ScoringPlan
from gainrl_ops.scoring.scorer import ScoreConfig, score_part

VERSION = "0123456789abcdef"
# Small batches that mix lengths, so that a back-off changes how prompts are grouped and padded.
CONFIG = ScoreConfig(max_batch_size=16, max_batch_tokens=400)


@pytest.fixture(scope="module")
def tiny(tiny_model_path: Path):
    # Two batchings of the same prompts: the same maths, so float64 (tests/exact.py).
    return float64_model(load_model(ModelSpec(str(tiny_model_path), dtype="float64"))), load_tokenizer(str(tiny_model_path))


def _plan(root: Path, model_path: Path, tokenizer, n: int = 40) -> ScoringPlan:
    problems = generate(ArithmeticConfig(n_problems=n, seed=31))
    table = pa.table({"id": [problem_id(p.problem) for p in problems], "problem": [p.problem for p in problems]})
    shards = tokenize_to_shards(table, tokenizer, PromptConfig(), Layout(root), "d", VERSION, shard_size=n)
    key = ScoresKey("d", VERSION, shards.prompt_fingerprint, checkpoint_fingerprint(str(model_path)))
    return ScoringPlan(root, key, shards, "tiny", str(model_path), "float64")


def _scores(plan: ScoringPlan) -> dict[str, np.ndarray]:
    part = pq.read_table(next((plan.staging / "parts").glob("part-*.parquet"))).to_pydict()
    order = np.argsort(part["id"])
    return {name: np.asarray(part[name], dtype=np.float64)[order] for name in ("c_intra", "c_inter", "angle_score")}


class _OutOfMemoryAbove:
    """A forward pre-hook that fails as CUDA does when a batch holds more than `limit` tokens."""

    def __init__(self, limit: int):
        self.limit = limit
        self.failed: list[int] = []

    def __call__(self, _module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        if kwargs.get("past_key_values") is not None and kwargs.get("position_ids") is None:
            return  # the shard's shared prefix, run once (`run_prefix`): not a batch
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids.numel() > self.limit:
            self.failed.append(ids.numel())
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate for {ids.numel()} tokens")


@pytest.mark.numerics
def test_out_of_memory_halves_the_budget_retries_and_gives_the_same_scores(
    tiny, tiny_model_path: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    model, tokenizer = tiny
    plain = _plan(tmp_path / "plain", tiny_model_path, tokenizer)
    assert score_part(model, plain, 0, CONFIG)

    injected = _plan(tmp_path / "injected", tiny_model_path, tokenizer)
    oom = _OutOfMemoryAbove(limit=150)
    handle = model.register_forward_pre_hook(oom, with_kwargs=True)
    try:
        with caplog.at_level(logging.WARNING, logger="gainrl_ops.scoring.scorer"):
            assert score_part(model, injected, 0, CONFIG)
    finally:
        handle.remove()

    assert oom.failed, "the injected limit must be hit, or nothing is tested"
    expected, got = _scores(plain), _scores(injected)
    for name in expected:
        assert np.isfinite(got[name]).all()
        np.testing.assert_allclose(got[name], expected[name], rtol=0, atol=EXACT)
    lines = [r.getMessage() for r in caplog.records if "out of cpu memory" in r.getMessage()]
    assert len(lines) == len(oom.failed)
    assert "shard-00000.parquet" in lines[0] and "token budget halved to" in lines[0] and "retrying" in lines[0]


def test_a_prompt_that_does_not_fit_alone_is_a_one_line_error(tiny, tiny_model_path: Path, tmp_path: Path) -> None:
    model, tokenizer = tiny
    plan = _plan(tmp_path, tiny_model_path, tokenizer, n=8)
    handle = model.register_forward_pre_hook(_OutOfMemoryAbove(limit=0), with_kwargs=True)
    try:
        with pytest.raises(ValueError, match=r"shard-00000.parquet: a single prompt \(\d+ tokens to run\) does not fit in cpu memory; lower max_tokens") as error:
            score_part(model, plan, 0, CONFIG)
    finally:
        handle.remove()
    assert "\n" not in str(error.value)
    assert not list(plan.staging.rglob("part-*.parquet"))


def test_models_load_with_sdpa_attention(tiny_model_path: Path) -> None:
    """Scoring reads no attention weights, so the fused kernels are used where the architecture has them."""
    model = load_model(ModelSpec(str(tiny_model_path), dtype="float32", device="cpu"))
    assert model.config._attn_implementation == "sdpa"
