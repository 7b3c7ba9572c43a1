"""The embedded model's warm-up: the cheap loss is the plain loss, and builds are reproducible."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from exact import EXACT, float64_model
from safetensors.torch import load_file
from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

from gainrl_ops.data.arithmetic import ArithmeticConfig, generate
from gainrl_ops.data.prompts import PromptConfig
from gainrl_ops.training.embedded import (
    EmbeddedModelConfig,
    build_embedded_model,
    sft_examples,
    sft_loss,
    shared_prefix,
)


def _loss_in_model_dtype(logits, labels, vocab_size, num_items_in_batch=None, ignore_index=-100, **_) -> torch.Tensor:
    """transformers' causal LM loss without its cast of the logits to float32, so that a float64
    model's loss stays float64 (the cast would round both paths' losses to float32 differently)."""
    shifted = torch.nn.functional.pad(labels, (0, 1), value=ignore_index)[..., 1:]
    reduction = "mean" if num_items_in_batch is None else "sum"
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, vocab_size), shifted.reshape(-1), ignore_index=ignore_index, reduction=reduction
    )
    return loss if num_items_in_batch is None else loss / num_items_in_batch


def _padded_loss(model: Qwen2ForCausalLM, examples: list[tuple[list[int], int]], pad_id: int) -> torch.Tensor:
    """The reference: one right-padded forward of the whole batch, loss on the solutions."""
    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad_id)
    labels = torch.full((len(examples), width), -100)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, (ids, start) in enumerate(examples):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, start : len(ids)] = torch.tensor(ids[start:])
        mask[row, : len(ids)] = 1
    return model(input_ids=input_ids, attention_mask=mask, labels=labels, use_cache=False).loss


@pytest.fixture(scope="module")
def setup(tiny_model_path: Path) -> tuple[Qwen2ForCausalLM, list[tuple[list[int], int]], int]:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    # Mixed lengths: one to three steps, one or two digits.
    problems = generate(ArithmeticConfig(n_problems=13, seed=3, max_steps=3, max_digits=2))
    examples = sft_examples(tokenizer, problems, PromptConfig())
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id)
    # float64: the micro-batched loss with a broadcast prefix and one padded forward are the same
    # maths, so they agree to rounding on any CPU.
    model = float64_model(Qwen2ForCausalLM(config)).train()
    model.loss_function = _loss_in_model_dtype
    return model, examples, tokenizer.pad_token_id


def _grads(model: Qwen2ForCausalLM, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def test_shared_prefix_is_the_template_head_and_stops_before_every_solution(setup) -> None:
    _, examples, _ = setup
    prefix = shared_prefix(examples)
    assert len(prefix) > 10  # chat markup and system prompt
    assert all(ids[: len(prefix)] == prefix and len(prefix) <= start for ids, start in examples)
    # The question follows at once: the next token differs between some examples.
    assert len({ids[len(prefix)] for ids, _ in examples}) > 1


@pytest.mark.numerics
@pytest.mark.parametrize("micro_batch", [1, 4, 13])
@pytest.mark.parametrize("use_prefix", [True, False])
def test_sft_loss_and_gradients_equal_one_padded_forward(setup, micro_batch: int, use_prefix: bool) -> None:
    model, examples, pad_id = setup
    prefix = shared_prefix(examples) if use_prefix else []
    expected = _padded_loss(model, examples, pad_id)
    expected_grads = _grads(model, expected)
    loss = sft_loss(model, prefix, examples, micro_batch, pad_id)
    grads = _grads(model, loss)
    assert loss.dtype == torch.float64
    assert loss.item() == pytest.approx(expected.item(), abs=EXACT)
    for name, grad in expected_grads.items():
        torch.testing.assert_close(grads[name], grad, atol=EXACT, rtol=0, msg=name)


def test_build_is_reproducible(tmp_path: Path) -> None:
    config = EmbeddedModelConfig(
        data=ArithmeticConfig(n_problems=300, seed=5, max_steps=1, max_digits=1),
        vocab_size=300, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1,
        sft_steps=6, batch_size=16, micro_batch=8, eval_problems=4,
    )
    reports, weights = [], []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        reports.append(build_embedded_model(config, tmp_path / name))
        weights.append(load_file(tmp_path / name / "model.safetensors"))
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert reports[0]["final_loss"] == reports[1]["final_loss"]
    recorded = json.loads((tmp_path / "a" / "gainrl_build.json").read_text())
    assert recorded["config"]["micro_batch"] == 8
    # Another seed is another model.
    (tmp_path / "c").mkdir()
    build_embedded_model(replace(config, seed=1), tmp_path / "c")
    other = load_file(tmp_path / "c" / "model.safetensors")
    assert not all(torch.equal(weights[0][k], other[k]) for k in other)
