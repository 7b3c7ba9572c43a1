"""The scorer against an explicit cosine matrix, across batching, architectures and restarts."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from exact import EXACT, float64_model
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    LlamaConfig,
    MistralConfig,
    PreTrainedModel,
    Qwen2Config,
)

from gainrl_ops.core.keys import ScoresKey
from gainrl_ops.core.layout import Layout
from gainrl_ops.core.stats import spearman
from gainrl_ops.data.arithmetic import ArithmeticConfig, generate
from gainrl_ops.data.datasets import problem_id
from gainrl_ops.data.prompts import PromptConfig, render_prompt
from gainrl_ops.data.shards import ShardSet, current_shards, tokenize_to_shards
from gainrl_ops.scoring import scorer
from gainrl_ops.scoring.capture import last_mlp, last_mlp_input
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
    score_part,
)

VERSION = "0123456789abcdef"  # a dataset content version; these tests build shards directly


def cosine_matrix_scores(hidden: torch.Tensor, system: tuple[int, int], question: tuple[int, int], w: float) -> tuple[float, float, float]:
    """DESIGN.md's definition read literally: the L x L cosine matrix of one prompt."""
    unit = torch.nn.functional.normalize(hidden.double(), dim=-1)
    cos = unit @ unit.T
    q = torch.arange(*question)
    s = torch.arange(*system)
    qq = cos[q][:, q]
    intra = (qq.sum() - qq.diagonal().sum()) / (len(q) * (len(q) - 1))
    inter = cos[q][:, s].mean()
    return intra.item(), inter.item(), (intra + w * inter).item()


def full_forward_mlp_input(model: PreTrainedModel, ids: list[int]) -> torch.Tensor:
    """The last MLP's input from an ordinary, complete forward pass (no early stop)."""
    seen = []
    handle = last_mlp(model).register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    with torch.no_grad():
        model(torch.tensor([ids]))
    handle.remove()
    return seen[0][0]


@pytest.fixture(scope="module")
def tiny(tiny_model_path: Path):
    # The scorer against a plain forward, batched against one prompt at a time: the same maths,
    # so float64, where they agree to rounding whatever the CPU's kernels.
    return float64_model(load_model(ModelSpec(str(tiny_model_path), dtype="float64"))), load_tokenizer(str(tiny_model_path))


@pytest.fixture(scope="module")
def prompts(tiny) -> list:
    _, tokenizer = tiny
    return [render_prompt(tokenizer, p.problem, PromptConfig()) for p in generate(ArithmeticConfig(n_problems=24, seed=11))]


def _batch_args(rendered: list) -> tuple[list, list, list]:
    return [r.input_ids for r in rendered], [r.system_span for r in rendered], [r.question_span for r in rendered]


@pytest.mark.numerics
def test_scores_equal_explicit_cosine_matrix(tiny, prompts) -> None:
    model, _ = tiny
    scores = score_batch(model, *_batch_args(prompts), inter_weight=8.0)
    for i, r in enumerate(prompts):
        expected = cosine_matrix_scores(full_forward_mlp_input(model, r.input_ids), r.system_span, r.question_span, 8.0)
        got = (scores.c_intra[i].item(), scores.c_inter[i].item(), scores.angle_score[i].item())
        assert got == pytest.approx(expected, abs=EXACT)


@pytest.mark.numerics
def test_batched_equals_unbatched_despite_padding(tiny, prompts) -> None:
    model, _ = tiny
    lengths = {len(r.input_ids) for r in prompts}
    assert len(lengths) > 3, "the batch must mix lengths so that padding is exercised"
    batched = score_batch(model, *_batch_args(prompts))
    for i, r in enumerate(prompts):
        alone = score_batch(model, *_batch_args([r]))
        assert batched.angle_score[i].item() == pytest.approx(alone.angle_score[0].item(), abs=EXACT)
        assert batched.c_intra[i].item() == pytest.approx(alone.c_intra[0].item(), abs=EXACT)


def test_forward_stops_before_last_mlp_final_norm_and_lm_head(tiny, prompts) -> None:
    model, _ = tiny
    called: list[str] = []
    modules = {"last_mlp": last_mlp(model), "final_norm": model.model.norm, "lm_head": model.lm_head}
    handles = [m.register_forward_hook(lambda *_a, name=name: called.append(name)) for name, m in modules.items()]
    first_layer = model.model.layers[0].register_forward_hook(lambda *_a: called.append("layer0"))
    try:
        score_batch(model, *_batch_args(prompts[:4]))
    finally:
        for h in handles + [first_layer]:
            h.remove()
    assert called == ["layer0"]


def _tiny_random(config_cls, **kwargs) -> PreTrainedModel:
    torch.manual_seed(0)
    return float64_model(AutoModelForCausalLM.from_config(config_cls(**kwargs))).eval()


@pytest.mark.numerics
@pytest.mark.parametrize("make", [
    lambda: _tiny_random(Qwen2Config, vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1),
    lambda: _tiny_random(LlamaConfig, vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1),
    lambda: _tiny_random(MistralConfig, vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1),
    lambda: _tiny_random(GPT2Config, vocab_size=300, n_embd=32, n_layer=2, n_head=2, n_positions=256),
], ids=["qwen2", "llama", "mistral", "gpt2"])
def test_capture_finds_last_mlp_input_on_each_architecture(make) -> None:
    model = make()
    torch.manual_seed(1)
    ids = [torch.randint(0, 300, (n,)).tolist() for n in (9, 14, 5)]
    batch = torch.zeros(3, 14, dtype=torch.long)
    mask = torch.zeros(3, 14, dtype=torch.long)
    for row, seq in enumerate(ids):
        batch[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    with torch.no_grad():
        captured = last_mlp_input(model, batch, mask)
    for row, seq in enumerate(ids):
        torch.testing.assert_close(captured[row, : len(seq)], full_forward_mlp_input(model, seq), atol=EXACT, rtol=0)
    scores = score_batch(model, ids, [(0, 2)] * 3, [(2, len(s)) for s in ids])
    assert torch.isfinite(scores.angle_score).all()


@pytest.mark.numerics
def test_bfloat16_ranks_the_prompts_as_float32_does(tiny_model_path: Path, prompts) -> None:
    """What the dtype rule promises a bfloat16 device: scores summed in float32 and a ranking that
    agrees with float32's. Each precision's error is measured against the float64 reference."""
    reference = score_batch(float64_model(load_model(ModelSpec(str(tiny_model_path), dtype="float64"))), *_batch_args(prompts)).angle_score
    fp32 = score_batch(load_model(ModelSpec(str(tiny_model_path), dtype="float32")), *_batch_args(prompts)).angle_score
    bf16_model = load_model(ModelSpec(str(tiny_model_path), dtype="bfloat16"))
    assert next(bf16_model.parameters()).dtype == torch.bfloat16
    bf16 = score_batch(bf16_model, *_batch_args(prompts)).angle_score
    assert bf16.dtype == torch.float32 and fp32.dtype == torch.float32
    assert spearman(bf16.double().numpy(), fp32.double().numpy()) >= 0.99
    # Each precision's error against float64 is its unit roundoff times how much this model
    # amplifies rounding, measured on float32 (here 7x float32's eps; bfloat16 came to 1x its own).
    fp32_error = (fp32.double() - reference).abs().max().item()
    bf16_error = (bf16.double() - reference).abs().max().item()
    amplification = max(fp32_error / torch.finfo(torch.float32).eps, 1.0)
    assert bf16_error <= 4 * amplification * torch.finfo(torch.bfloat16).eps


def _dataset(n: int) -> pa.Table:
    problems = generate(ArithmeticConfig(n_problems=n, seed=21))
    return pa.table({"id": [problem_id(p.problem) for p in problems], "problem": [p.problem for p in problems]})


def _plan(root: Path, path: Path, shards: ShardSet) -> ScoringPlan:
    key = ScoresKey("arithmetic", VERSION, shards.prompt_fingerprint, checkpoint_fingerprint(str(path)))
    return ScoringPlan(root, key, shards, "tiny", str(path), "float64")


def test_score_and_publish_writes_the_ranked_scores_of_the_plan_and_refuses_a_changed_shard(tiny, tiny_model_path: Path, tmp_path: Path) -> None:
    model, tokenizer = tiny
    shards = tokenize_to_shards(_dataset(30), tokenizer, PromptConfig(), Layout(tmp_path), "arithmetic", VERSION, shard_size=10)
    plan = _plan(tmp_path, tiny_model_path, shards)
    summary = score_and_publish(model, plan, progress=False)
    ranked = pq.read_table(plan.ranked_scores).to_pydict()
    assert plan.final == Layout(tmp_path).scores(plan.key) and summary.directory == plan.final and not plan.staging.exists()
    assert ranked["rank"] == list(range(1, 31)) and set(ranked["dataset_version"]) == {VERSION} and set(ranked["model"]) == {"tiny"}
    # A shard rewritten after the run was planned: a one-line error naming the file, nothing published.
    pq.write_table(pq.read_table(shards.shards[1].path).slice(0, 5), shards.shards[1].path)
    with pytest.raises(ValueError, match=r"shard-00001.parquet: changed since this run was planned") as error:
        score_and_publish(model, plan, ScoreConfig(inter_weight=2.0), progress=False)
    assert "\n" not in str(error.value)
    assert set(pq.read_table(plan.ranked_scores).column("inter_weight").to_pylist()) == {8.0}


def test_publish_refuses_a_part_made_for_another_context(tiny, tiny_model_path: Path, tmp_path: Path) -> None:
    model, tokenizer = tiny
    shards = tokenize_to_shards(_dataset(20), tokenizer, PromptConfig(), Layout(tmp_path), "arithmetic", VERSION, shard_size=10)
    plan = _plan(tmp_path, tiny_model_path, shards)
    other = ScoringPlan(tmp_path, plan.key, shards, "another-name", plan.checkpoint_path, "float64")
    assert score_part(model, plan, 0) and score_part(model, other, 1)
    with pytest.raises(RuntimeError, match=r"part-00001.parquet: made from other shards or another checkpoint, version or model"):
        plan.publish(2)
    assert not plan.final.exists()


def test_score_and_publish_writes_one_row_per_prompt_with_provenance(tiny, tiny_model_path: Path, tmp_path: Path) -> None:
    model, tokenizer = tiny
    table = _dataset(50)
    shards = tokenize_to_shards(table, tokenizer, PromptConfig(), Layout(tmp_path), "d", VERSION, shard_size=16)
    assert len(shards.shards) == 4
    plan = _plan(tmp_path, tiny_model_path, shards)
    summary = score_and_publish(model, plan, progress=False)
    scores = pa.concat_tables(
        [pq.read_table(p) for p in sorted((plan.final / "parts").glob("part-*.parquet"))]
    ).to_pydict()
    assert summary.rows == 50 and summary.parts_written == 4
    assert sorted(scores["id"]) == sorted(table.column("id").to_pylist())
    assert set(scores["checkpoint"]) == {checkpoint_fingerprint(str(tiny_model_path))}
    assert set(scores["code_version"]) == {scorer.code_version()}
    assert all(q > 1 for q in scores["question_tokens"]) and all(s > 1 for s in scores["system_tokens"])
    for intra, inter, score, w in zip(scores["c_intra"], scores["c_inter"], scores["angle_score"], scores["inter_weight"]):
        assert score == pytest.approx(intra + w * inter)


def test_interrupted_scoring_resumes_without_rescoring_or_duplicates(tiny, tiny_model_path: Path, tmp_path: Path, monkeypatch) -> None:
    model, tokenizer = tiny
    shards = tokenize_to_shards(_dataset(40), tokenizer, PromptConfig(), Layout(tmp_path), "d", VERSION, shard_size=10)
    plan = _plan(tmp_path, tiny_model_path, shards)
    real = scorer._score_shard
    calls = []

    def crash_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(scorer, "_score_shard", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        score_and_publish(model, plan, progress=False)
    assert sorted(p.name for p in (plan.staging / "parts").iterdir()) == ["part-00000.parquet", "part-00001.parquet"]
    assert not plan.final.exists()
    monkeypatch.setattr(scorer, "_score_shard", real)
    summary = score_and_publish(model, plan, progress=False)
    assert (summary.parts_reused, summary.parts_written) == (2, 2)
    ids = pa.concat_tables([pq.read_table(p) for p in (plan.final / "parts").glob("part-*.parquet")]).column("id").to_pylist()
    assert len(ids) == len(set(ids)) == 40
    # Another inter weight is another result: nothing is reused.
    again = score_and_publish(model, plan, ScoreConfig(inter_weight=2.0), progress=False)
    assert again.parts_reused == 0


def test_tokenize_to_shards_resumes_and_reuses_finished_sets(tiny, tmp_path: Path, monkeypatch) -> None:
    _, tokenizer = tiny
    table = _dataset(30)
    first = tokenize_to_shards(table, tokenizer, PromptConfig(), Layout(tmp_path), "d", VERSION, shard_size=10)
    mtimes = {s.path: s.path.stat().st_mtime_ns for s in first.shards}
    again = tokenize_to_shards(table, tokenizer, PromptConfig(), Layout(tmp_path), "d", VERSION, shard_size=10)
    assert again == first and {s.path: s.path.stat().st_mtime_ns for s in again.shards} == mtimes
    rows = pq.read_table(first.shards[0].path).to_pylist()
    assert all(r["n_tokens"] == len(r["input_ids"]) and r["question_end"] > r["question_start"] for r in rows)


def test_current_shards_are_the_last_set_made_and_must_match_the_prompt(tiny, tmp_path: Path) -> None:
    _, tokenizer = tiny
    layout = Layout(tmp_path)
    first = tokenize_to_shards(_dataset(12), tokenizer, PromptConfig(), layout, "d", VERSION, shard_size=10)
    assert current_shards(layout, "d", VERSION, PromptConfig()) == first
    other = tokenize_to_shards(_dataset(12), tokenizer, PromptConfig(system_prompt="Be brief."), layout, "d", VERSION, shard_size=10)
    assert other.prompt_fingerprint != first.prompt_fingerprint and current_shards(layout, "d", VERSION) == other
    with pytest.raises(ValueError, match="materialize tokenized_shards again"):
        current_shards(layout, "d", VERSION, PromptConfig())
    with pytest.raises(FileNotFoundError, match="materialize tokenized_shards first"):
        current_shards(layout, "unknown", VERSION)
