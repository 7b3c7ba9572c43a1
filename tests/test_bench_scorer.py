"""The scoring benchmark's inputs: its prompt generator and its published-procedure competitor."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from transformers import AutoTokenizer

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from math_prompts import MathPromptConfig, generate  # noqa: E402


def test_prompts_are_seeded_distinct_and_a_longer_list_extends_a_shorter_one() -> None:
    def count(text: str) -> int:
        return len(text.split())

    short = generate(MathPromptConfig(20, seed=5), count, overhead_tokens=40)
    long = generate(MathPromptConfig(50, seed=5), count, overhead_tokens=40)
    other = generate(MathPromptConfig(20, seed=6), count, overhead_tokens=40)
    assert long[:20] == short
    assert other != short
    assert len({r["problem"] for r in long}) == 50
    assert all(r["answer"] for r in long)


def test_prompts_fill_the_token_budget_of_the_tokenizer_they_are_made_for(tiny_model_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    config = MathPromptConfig(30, seed=1, min_tokens=150, max_tokens=600)
    lengths = [count(r["problem"]) for r in generate(config, count, overhead_tokens=0)]
    # Counting sentence by sentence is exact up to a token at each joint; a problem's core
    # alone may exceed a small target, so the floor is looser than the ceiling.
    assert max(lengths) <= config.max_tokens + 5
    assert sorted(lengths)[len(lengths) // 2] >= 250
    assert min(lengths) >= 60


def test_published_procedure_ranks_every_prompt_with_its_offsets(tiny_model_path: Path, tmp_path: Path) -> None:
    """The competitor runs on CPU with its own switch and keeps the published slicing:
    `cos[110:-6][110:-6]` is empty, so the value NaN, for prompts of at most 232 tokens."""
    import published_data_processor as published

    long_problem = " ".join(["Let $f(x) = 3x^2 + 2x + 1$ and compute $f(7)$ twice to be sure."] * 40)
    records = [{"problem": "What is 1+1?", "answer": "2"}, {"problem": long_problem, "answer": "162"}, {"problem": "2+3?", "answer": "5"}]
    data, out, timings = tmp_path / "data.json", tmp_path / "indices.pt", tmp_path / "timings.json"
    data.write_text(json.dumps(records))
    subprocess.run(
        [sys.executable, str(BENCHMARKS / "published_data_processor.py"), "--model_name", str(tiny_model_path),
         "--dataset_path", str(data), "--save_path", str(out), "--gpu_id", "-1", "--timings", str(timings)],
        check=True, capture_output=True,
    )
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    lengths = []
    for record in records:
        chat = [
            {"role": "system", "content": published.R1_SYSTEM_PROMPT},
            {"role": "user", "content": published.FEW_SHOT_QUESTION},
            {"role": "assistant", "content": published.FEW_SHOT_ANSWER},
            {"role": "user", "content": record["problem"]},
        ]
        text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        lengths.append(min(len(tokenizer(text)["input_ids"]), published.MAX_LENGTH))
    order = torch.load(out, weights_only=True)
    assert sorted(order.tolist()) == [0, 1, 2]
    steps = json.loads(timings.read_text())
    assert steps["n_prompts"] == 3 and steps["dtype"] == "float32"
    assert steps["n_tokens"] == sum(lengths)
    assert steps["nan_values"] == sum(n <= 232 for n in lengths)
    assert max(lengths) > 232  # the long problem gets a finite value


def test_both_sides_are_split_into_the_same_phases_that_add_up_to_the_wall_clock() -> None:
    """gainrl's import phase starts at the launch; the published script's is what its timed
    steps leave of the time to its end; whatever no phase covers is `other`."""
    import bench_scorer

    ours = bench_scorer.gainrl_phases(100.0, 10.0, {
        "started_at": 100.5, "finished_at": 109.0,
        "seconds": {"import": 2.0, "load": 1.0, "tokenize": 0.5, "score": 4.0, "write": 0.25, "refresh": 0.5},
    })
    assert ours == {"import": 2.5, "load": 1.0, "tokenize": 0.5, "score": 4.0, "write": 0.25, "refresh": 0.5, "other": 1.25}
    steps = {"load_seconds": 1.0, "prepare_seconds": 0.5, "collect_seconds": 12.0, "tokenize_seconds": 2.0,
             "angle_seconds": 1.0, "save_seconds": 0.25}
    theirs = bench_scorer.published_phases(100.0, 20.0, {"program_started_at": 100.25, "program_ended_at": 119.75}, steps)
    assert theirs == {"import": 5.0, "load": 1.5, "tokenize": 2.0, "score": 11.0, "write": 0.25, "refresh": 0.0, "other": 0.25}
    assert sum(ours.values()) == 10.0 and sum(theirs.values()) == 20.0
