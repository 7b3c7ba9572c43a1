"""Signal diagnostics: the GRPO gradient, the fallback, the statistics and the verdict."""

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from conftest import SHARED_DATA

from gainrl_ops.data.arithmetic import ArithmeticConfig, generate
from gainrl_ops.data.datasets import load_dataset
from gainrl_ops.data.prompts import PromptConfig
from gainrl_ops.diagnostics.checks import angle_predicts_gradient
from gainrl_ops.diagnostics.gradients import (
    completion_logps,
    completion_mask,
    gradient_norm,
    group_advantages,
    grpo_loss,
    nll_loss,
)
from gainrl_ops.diagnostics.signal import (
    GRPO,
    LENGTH,
    REFERENCE_NLL,
    DiagnosticsConfig,
    associations,
    diagnose,
    reference_solution,
    sample_prompts,
    verdict,
    write_report,
)
from gainrl_ops.scoring.models import ModelSpec, load_model, load_tokenizer


def _rows(angle: np.ndarray, length: np.ndarray, grad: np.ndarray, rng: np.random.Generator) -> pl.DataFrame:
    """Synthetic diagnostic rows; the components are noisy parts of the angle score."""
    n = angle.size
    return pl.DataFrame({
        "id": [f"p{i}" for i in range(n)],
        "angle_score": angle,
        "c_intra": angle + rng.normal(size=n),
        "c_inter": angle / 8 + rng.normal(size=n) / 8,
        LENGTH: length,
        "grad_norm": grad,
        "gradient_source": [GRPO] * n,
    })


def test_a_length_proxy_gets_a_raw_correlation_but_no_partial_one_and_a_no() -> None:
    # Shorter prompts score higher and also give larger gradients; the score adds nothing else.
    rng = np.random.default_rng(0)
    n = 400
    length = rng.uniform(40, 300, size=n)
    angle = -length + rng.normal(scale=20, size=n)
    grad = np.exp(-length / 100 + rng.normal(scale=0.3, size=n))
    config = DiagnosticsConfig(n_boot=400)
    found = associations(_rows(angle, length, grad, rng), config)
    by = {(a.subset, a.label): a.correlation for a in found}

    assert by[("all", "angle_score")].estimate > 0.6 and by[("all", "angle_score")].significant
    assert by[("all", LENGTH)].estimate < -0.6
    partial = by[("all", f"angle_score | {LENGTH}")]
    assert abs(partial.estimate) < 0.1 and partial.low < 0 < partial.high
    assert verdict(found, config.level).startswith("angle predicts gradient norm beyond length: no at 95% (partial Spearman ")


def test_a_score_with_its_own_signal_gets_a_yes_and_an_interval_around_the_truth() -> None:
    # grad = angle + length + noise with angle independent of length: the partial correlation of
    # grad and angle given length is the correlation of angle with angle + noise, i.e. 1/sqrt(2)
    # as a Pearson value, or 6/pi asin(rho/2) ~ 0.69 as a Spearman value for normal data.
    rng = np.random.default_rng(1)
    n = 500
    length = rng.normal(size=n)
    angle = rng.normal(size=n)
    grad = angle + length + rng.normal(size=n)
    config = DiagnosticsConfig(n_boot=400)
    found = associations(_rows(angle, length, grad, rng), config)
    partial = next(a.correlation for a in found if a.subset == "all" and a.control == LENGTH)
    truth = 6 / math.pi * math.asin(1 / math.sqrt(2) / 2)
    assert partial.low < truth < partial.high and partial.n == n
    line = verdict(found, config.level)
    assert line.startswith("angle predicts gradient norm beyond length: yes at 95%") and "\n" not in line


def test_a_significantly_negative_partial_is_a_no_that_says_so() -> None:
    rng = np.random.default_rng(2)
    n = 300
    length = rng.normal(size=n)
    angle = rng.normal(size=n)
    found = associations(_rows(angle, length, -angle + rng.normal(size=n), rng), DiagnosticsConfig(n_boot=300))
    assert "no at 95%" in (line := verdict(found, 0.95)) and "significantly negative" in line


def test_associations_cover_all_rows_and_the_grpo_rows_alone() -> None:
    rng = np.random.default_rng(3)
    rows = _rows(rng.normal(size=40), rng.normal(size=40), rng.uniform(1, 2, size=40), rng)
    rows = rows.with_columns(gradient_source=pl.Series([GRPO] * 25 + [REFERENCE_NLL] * 15))
    found = associations(rows, DiagnosticsConfig(n_boot=50))
    assert {(a.subset, a.label, a.correlation.n) for a in found} == {
        (subset, label, n)
        for subset, n in (("all", 40), (GRPO, 25))
        for label in ("angle_score", "c_intra", "c_inter", LENGTH, f"angle_score | {LENGTH}")
    }
    # Too few GRPO rows for a correlation: the verdict says so instead of printing nan.
    few = rows.with_columns(gradient_source=pl.Series([GRPO] * 2 + [REFERENCE_NLL] * 38))
    assert "GRPO rows only: n/a (n=2)" in verdict(associations(few, DiagnosticsConfig(n_boot=50)), 0.95)


def test_group_advantages_are_trl_group_scaled() -> None:
    advantages = group_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0]))
    # mean 0.5, sample std sqrt(1/3): A = +-0.5 / (0.57735 + 1e-4)
    assert advantages.tolist() == pytest.approx([0.86588, -0.86588, -0.86588, 0.86588], abs=1e-5)
    assert group_advantages(torch.ones(8)).abs().max() == 0


def test_grpo_loss_gradient_is_the_advantage_weighted_score_function() -> None:
    # logp = w * x: dL/dw = -1 / (G T) * sum mask * A * x, whatever the value of w.
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    advantages = torch.tensor([1.5, -0.5], dtype=torch.float64)
    w = torch.tensor(0.3, requires_grad=True)
    loss = grpo_loss(w * x, mask, advantages, max_completion_length=4)
    (grad,) = torch.autograd.grad(loss, w)
    expected = -(1.5 * (1 + 2) - 0.5 * (4 + 5 + 6)) / (2 * 4)
    assert float(grad) == pytest.approx(expected)
    assert float(loss.detach()) == pytest.approx(-(1.5 * 2 - 0.5 * 3) / 8)


def test_nll_loss_and_completion_mask() -> None:
    logps = torch.log(torch.tensor([[0.5, 0.25, 0.1]]))
    assert float(nll_loss(logps, torch.tensor([[1.0, 1.0, 0.0]]))) == pytest.approx(-(math.log(0.5) + math.log(0.25)) / 2)
    ids = torch.tensor([[5, 2, 7, 0], [5, 5, 5, 5], [0, 9, 9, 9]])
    assert completion_mask(ids, [0, 2]).tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]


def test_gradient_norm_is_the_l2_norm_over_all_parameters() -> None:
    layer = torch.nn.Linear(3, 2)
    frozen = torch.nn.Linear(2, 1)
    frozen.requires_grad_(False)
    model = torch.nn.Sequential(layer, frozen)
    x = torch.tensor([[1.0, -2.0, 0.5]])
    loss = model(x).sum()
    # dL/dW_ij = v_i x_j and dL/db_i = v_i for the frozen layer's weights v.
    v = frozen.weight.detach()[0]
    expected = math.sqrt(float((v[:, None] * x).pow(2).sum() + v.pow(2).sum()))
    assert gradient_norm(model, loss) == pytest.approx(expected, rel=1e-6)
    assert layer.weight.grad is None


def test_reference_solution_prefers_a_worked_solution() -> None:
    assert reference_solution("8", json.dumps({"solution": "2 * 4 = 8\n#### 8", "steps": 1})) == "2 * 4 = 8\n#### 8"
    verl = {"extra_info": {"answer": "16 - 3 - 4 = 9\n9 * 2 = 18\n#### 18", "index": 0, "question": "Janet..."}}
    assert reference_solution("18", json.dumps(verl)) == "16 - 3 - 4 = 9\n9 * 2 = 18\n#### 18"
    # A solution for another answer is not this row's: fall back to the answer itself.
    assert reference_solution("19", json.dumps(verl)) == "19"
    assert reference_solution("42", None) == "42"


@pytest.mark.skipif(not (SHARED_DATA / "gsm8k_test_verl.parquet").exists(), reason="shared GSM8K verl data not present")
def test_every_real_gsm8k_row_has_its_worked_solution_as_reference() -> None:
    table = load_dataset(SHARED_DATA / "gsm8k_test_verl.parquet").table
    references = [reference_solution(a, m) for a, m in zip(table.column("answer").to_pylist(), table.column("metadata").to_pylist())]
    assert references[0].startswith("Janet sells 16 - 3 - 4") and references[0].endswith("#### 18")
    assert all("####" in r for r in references)


def test_sample_is_seeded_and_independent_of_row_order() -> None:
    frame = pl.DataFrame({
        "id": [f"p{i:03d}" for i in range(100)], "problem": "q", "answer": "1",
        "angle_score": 0.0, "c_intra": 0.0, "c_inter": 0.0, LENGTH: 10,
    })
    first = sample_prompts(frame, 10, seed=5)
    assert first.height == 10 and first["id"].n_unique() == 10
    assert sample_prompts(frame.reverse(), 10, seed=5)["id"].to_list() == first["id"].to_list()
    assert sample_prompts(frame, 10, seed=6)["id"].to_list() != first["id"].to_list()
    assert sample_prompts(frame, 500, seed=5).height == 100
    with pytest.raises(ValueError, match=r"lack columns \['angle_score'\]"):
        sample_prompts(frame.drop("angle_score"), 10, seed=5)


@pytest.fixture(scope="module")
def tiny(tiny_model_path: Path):
    return load_model(ModelSpec(str(tiny_model_path), dtype="float32")), load_tokenizer(str(tiny_model_path))


def _scored(n: int) -> pl.DataFrame:
    problems = generate(ArithmeticConfig(n_problems=n, seed=11, max_steps=1, max_digits=1))
    rng = np.random.default_rng(0)
    return pl.DataFrame({
        "id": [f"p{i:03d}" for i in range(n)],
        "problem": [p.problem for p in problems],
        "answer": [p.answer for p in problems],
        "metadata": [json.dumps({"solution": p.solution}) for p in problems],
        "angle_score": rng.normal(size=n), "c_intra": rng.normal(size=n), "c_inter": rng.normal(size=n),
        LENGTH: rng.integers(20, 40, size=n),
    })


def test_diagnose_on_the_tiny_model_measures_every_sampled_prompt(tiny, tmp_path: Path) -> None:
    model, tokenizer = tiny
    config = DiagnosticsConfig(sample_size=20, num_generations=4, max_completion_length=16, generation_batch=8, n_boot=100)
    report = diagnose(model, tokenizer, _scored(50), PromptConfig(), config, progress=False)
    rows = report.rows
    assert rows.height == 20 and rows["id"].n_unique() == 20
    assert (rows["grad_norm"] > 0).all() and rows["grad_norm"].is_finite().all()
    grpo = rows.filter(pl.col("gradient_source") == GRPO)
    fallback = rows.filter(pl.col("gradient_source") == REFERENCE_NLL)
    assert grpo.height + fallback.height == 20
    # GRPO exactly where the group's rewards differ, the reference NLL where they are all equal.
    assert (grpo["reward_std"] > 0).all() and (fallback["reward_std"] == 0).all()
    assert fallback["reference_tokens"].is_not_null().all() and grpo["reference_tokens"].is_null().all()
    assert ((rows["completion_tokens"] >= 1) & (rows["completion_tokens"] <= 16)).all()
    assert not model.training

    again = diagnose(model, tokenizer, _scored(50), PromptConfig(), config, progress=False)
    assert again.rows["grad_norm"].to_list() == rows["grad_norm"].to_list()
    assert again.verdict == report.verdict

    paths = write_report(report, tmp_path / "diag" / "ckpt")
    stored = pl.read_parquet(paths["rows"])
    assert stored.height == 20 and "problem" not in stored.columns and "grad_norm" in stored.columns
    summary = json.loads(paths["summary"].read_text())
    assert summary["verdict"] == report.verdict and summary["n_prompts"] == 20
    assert sum(summary["gradient_source"].values()) == 20
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    outcome = angle_predicts_gradient(paths["summary"])
    assert outcome.passed == summary["angle_predicts_gradient_beyond_length"] and outcome.details["verdict"] == report.verdict


def test_grpo_gradient_matches_trl_loss(tiny_model_path: Path, tmp_path: Path) -> None:
    """Our per-group loss has the gradient of TRL's own `_compute_loss`, up to TRL's normaliser."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    model, tokenizer = load_model(ModelSpec(str(tiny_model_path), dtype="float32")), load_tokenizer(str(tiny_model_path))
    trainer = GRPOTrainer(
        model=model,
        processing_class=tokenizer,
        reward_funcs=[lambda completions, **_: [0.0] * len(completions)],
        args=GRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none", num_generations=4,
                        per_device_train_batch_size=4, max_completion_length=6, temperature=0.7),
        train_dataset=Dataset.from_dict({"prompt": ["a"] * 4}),
    )
    model.eval()
    prompt = tokenizer("Jo has 2 books.", add_special_tokens=False)["input_ids"]
    completions = torch.tensor([[5, 6, 7, 2, 0, 0], [8, 9, 2, 0, 0, 0], [5, 5, 5, 5, 5, 5], [7, 2, 0, 0, 0, 0]])
    mask = completion_mask(completions, [0, 2])
    advantages = group_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0]))

    ours = grpo_loss(completion_logps(model, prompt, completions, mask, 0.7), mask, advantages, 6)
    trl_loss = trainer._compute_loss(model, {
        "prompt_ids": torch.tensor([prompt] * 4), "prompt_mask": torch.ones(4, len(prompt), dtype=torch.long),
        "completion_ids": completions, "completion_mask": mask.long(),
        "advantages": advantages.float(), "num_items_in_batch": mask.sum(),
    })
    # TRL (dapo) divides by the batch's completion tokens, we by G * T.
    scale = float(mask.sum()) / (4 * 6)
    params = [p for p in model.parameters() if p.requires_grad]
    ours_grads = torch.autograd.grad(ours, params, retain_graph=True)
    trl_grads = torch.autograd.grad(trl_loss, params, retain_graph=True)
    for mine, theirs in zip(ours_grads, trl_grads):
        torch.testing.assert_close(mine, theirs * scale, rtol=1e-4, atol=1e-6)
    assert gradient_norm(model, ours) > 0 and scale < 1
