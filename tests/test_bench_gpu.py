"""The GPU benchmark: its peak table and FLOPs on literals, and its whole run on the CPU (--smoke)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from bench_gpu import causal_contexts, dense_bf16_peak, forward_flops, gainrl_work  # noqa: E402


@pytest.mark.parametrize(("name", "entry", "tflops"), [
    ("NVIDIA H100 80GB HBM3", "H100 SXM", 989.4),
    ("NVIDIA H100 PCIe", "H100 PCIe", 756.0),
    ("NVIDIA H100 NVL", "H100 NVL", 835.0),
    ("NVIDIA H200", "H200 SXM", 989.4),
    ("NVIDIA A100-SXM4-80GB", "A100", 312.0),
    ("NVIDIA A100 80GB PCIe", "A100", 312.0),
    ("NVIDIA L4", "L4", 121.0),
    ("NVIDIA L40S", "L40S", 362.05),
    ("NVIDIA L40", "L40", 181.05),
    ("NVIDIA A10G", "A10G", 70.0),
    ("NVIDIA A10", "A10", 125.0),
    ("NVIDIA GeForce RTX 4090", "GeForce RTX 4090 (fp32 accumulate)", 165.2),
])
def test_device_names_find_their_dense_bf16_peak(name: str, entry: str, tflops: float) -> None:
    assert dense_bf16_peak(name) == (entry, tflops)


def test_an_unlisted_device_has_no_peak() -> None:
    assert dense_bf16_peak("Tesla T4") is None


def test_flops_count_each_token_once_and_each_causal_pair_once() -> None:
    assert causal_contexts(0, 3) == 1 + 2 + 3
    assert causal_contexts(2, 4) == 3 + 4
    assert forward_flops(params=10, tokens=3, layers=2, attention_width=4, contexts=6) == 2 * 10 * 3 + 4 * 2 * 4 * 6
    # Two prompts of one shard sharing a 2-token prefix: the prefix runs once, then each suffix.
    rows = [{"shard": 0, "prefix": 2, "n_tokens": 4}, {"shard": 0, "prefix": 2, "n_tokens": 3}]
    assert gainrl_work(rows) == {"prompt_tokens": 7, "run_tokens": 2 + 2 + 1, "contexts": (1 + 2) + (3 + 4) + 3}


def test_smoke_runs_both_procedures_and_reports_ratio_and_agreement(tmp_path: Path) -> None:
    out = tmp_path / "bench_gpu.json"
    done = subprocess.run([sys.executable, str(BENCHMARKS / "bench_gpu.py"), "--smoke", "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["smoke"] and report["machine"]["device"] == "cpu"
    gainrl, published, agreement = report["gainrl"], report["published"], report["agreement"]
    # The same 32 prompts on both sides, tokenized alike.
    assert published["n_prompts"] == published["of_prompts"] == 32
    assert gainrl["prompt_tokens"] == published["prompt_tokens"] > 32 * 100
    assert agreement["same_token_ids"] == 32 and agreement["spearman"] >= 0.99 and agreement["met"]
    assert 0 < gainrl["run_tokens"] < gainrl["prompt_tokens"], "the shared prefix runs once per shard"
    for side in (gainrl, published):
        assert side["seconds"] > 0 and side["flops"] > 0 and side["prompt_tokens_per_s"] > 0
        assert side["peak_fraction"] is None  # a CPU has no entry in the peak table
    assert report["peak"]["why_none"] and len(report["peak"]["table"]) >= 8
    ratio = report["ratio"]["prompt_tokens_per_s"]
    assert math.isfinite(ratio) and ratio > 0
    assert gainrl["oom_backoffs"] == []
    assert report["model"]["parameters"]["decoder_layers"] > report["model"]["parameters"]["last_mlp"] > 0
