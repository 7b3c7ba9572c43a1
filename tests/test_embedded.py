"""The embedded model's warm-up: the cheap loss is the plain loss, and builds are reproducible,
in one process and across CPU kernels and thread counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from exact import EXACT
from safetensors.torch import load_file
from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

from gainrl_ops.data.arithmetic import ArithmeticConfig, generate
from gainrl_ops.data.prompts import PromptConfig
from gainrl_ops.training.embedded import (
    EmbeddedModelConfig,
    build_embedded_model,
    round_significand,
    sft_examples,
    sft_loss,
    shared_prefix,
)
from gainrl_ops.training.float64 import causal_lm_loss_in_model_dtype, float64_model

# A shortened build: every step of the recipe, in seconds.
SHORT = EmbeddedModelConfig(
    data=ArithmeticConfig(n_problems=300, seed=5, max_steps=1, max_digits=1),
    vocab_size=300, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1,
    sft_steps=30, batch_size=16, micro_batch=8, eval_problems=4,
)


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
    model.loss_function = causal_lm_loss_in_model_dtype
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


def test_round_significand_keeps_16_bits_rounding_half_away_from_zero() -> None:
    step = 2.0**-15  # the grid of 16 significant bits in [1, 2)
    values = torch.tensor([1 + step / 4, 1 + step / 2, -(1 + step / 2), 1 + 3 * step / 4, 2 - step / 4, 0.0, 3 * 2.0**-40], dtype=torch.float64)
    rounded = round_significand(values, 16)
    assert rounded.dtype == torch.float32
    assert rounded.tolist() == [1.0, 1 + step, -(1 + step), 1 + step, 2.0, 0.0, 3 * 2.0**-40]
    with pytest.raises(ValueError, match="1..24"):
        round_significand(values, 25)


def test_build_is_reproducible(tmp_path: Path) -> None:
    config = replace(SHORT, sft_steps=6)
    threads = torch.get_num_threads()
    reports, weights = [], []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        reports.append(build_embedded_model(config, tmp_path / name))
        weights.append(load_file(tmp_path / name / "model.safetensors"))
    # The build's numerics (float64, one thread) do not leak into the caller's.
    assert (torch.get_num_threads(), torch.get_default_dtype(), torch.are_deterministic_algorithms_enabled()) == (threads, torch.float32, False)
    assert {w.dtype for w in weights[0].values()} == {torch.float32}
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


_BUILD = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from test_embedded import SHORT
from gainrl_ops.training.embedded import build_embedded_model
print(json.dumps(build_embedded_model(SHORT, Path(sys.argv[1]))))
"""


@pytest.mark.numerics
def test_build_is_the_same_under_every_cpu_kernel_and_thread_count(tmp_path: Path) -> None:
    """The portable kernel with one thread and this CPU's own kernels with two build the same
    weights, tokenizer and fingerprint: what two machines (AVX2, AVX-512) would build."""
    runs = {"portable": {"ATEN_CPU_CAPABILITY": "default", "OMP_NUM_THREADS": "1"}, "native": {"OMP_NUM_THREADS": "2"}}
    processes = {}
    for name, extra in runs.items():
        env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"} | extra
        (tmp_path / name).mkdir()
        processes[name] = subprocess.Popen(
            [sys.executable, "-c", _BUILD, str(tmp_path / name), str(Path(__file__).parent)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
    reports = {}
    for name, process in processes.items():
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-2000:]
        reports[name] = json.loads(out.strip().splitlines()[-1])
    portable, native = (tmp_path / name for name in runs)
    assert reports["portable"]["fingerprint"] == reports["native"]["fingerprint"]
    assert reports["portable"]["held_out_accuracy"] == reports["native"]["held_out_accuracy"]
    a, b = load_file(portable / "model.safetensors"), load_file(native / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (portable / "tokenizer.json").read_bytes() == (native / "tokenizer.json").read_bytes()
