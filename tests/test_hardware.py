"""The dtype rule: "auto" is bfloat16 only where the hardware runs it natively, and what a score
row records is the resolved dtype, never "auto". The hardware is mocked at torch's own probes."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import polars as pl
import pytest
import torch

from gainrl_ops import cli
from gainrl_ops.scoring import hardware
from gainrl_ops.core.stats import spearman
from gainrl_ops.scoring.hardware import (
    AUTO_DTYPE_ENV,
    native_bf16,
    resolve_device,
    resolve_dtype,
)
from gainrl_ops.scoring.models import ModelSpec, load_model


@pytest.fixture(autouse=True)
def probe_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about the rule itself: the suite's pinned "auto" (conftest) is lifted."""
    monkeypatch.delenv(AUTO_DTYPE_ENV, raising=False)


def test_the_environment_pins_auto_on_every_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(AUTO_DTYPE_ENV, "float32")
    assert resolve_dtype("auto", "cpu", is_native=lambda _device: True) == "float32"
    assert resolve_dtype("bfloat16", "cpu") == "bfloat16"  # an explicit dtype still wins
    monkeypatch.setenv(AUTO_DTYPE_ENV, "bf16")
    with pytest.raises(ValueError, match=f"{AUTO_DTYPE_ENV}='bf16': expected one of float32, bfloat16, float16, float64"):
        resolve_dtype("auto", "cpu")


def _no_probe(device: str) -> bool:
    raise AssertionError(f"an explicit dtype must not probe the hardware ({device})")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16", "float64"])
def test_an_explicit_dtype_is_kept_without_asking_the_hardware(dtype: str) -> None:
    assert resolve_dtype(dtype, "cuda:3", is_native=_no_probe) == dtype


def test_auto_follows_the_probe_of_the_resolved_device(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def probe(answer: bool):
        return lambda device: asked.append(device) or answer

    assert resolve_dtype("auto", "cuda:1", is_native=probe(True)) == "bfloat16"
    assert resolve_dtype("auto", "cpu", is_native=probe(False)) == "float32"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_dtype("auto", "auto", is_native=probe(True)) == "bfloat16"
    assert asked == ["cuda:1", "cpu", "cpu"]  # the probe never sees "auto"


def test_an_unknown_dtype_is_a_one_line_error() -> None:
    with pytest.raises(ValueError, match=r"dtype 'fp8': expected 'auto' or one of float32, bfloat16, float16, float64"):
        resolve_dtype("fp8", "cpu")


@pytest.mark.parametrize(("capabilities", "native"), [
    ({"avx2": True, "avx512_f": True, "avx512_bf16": False, "amx_bf16": False}, False),  # AVX-512 without BF16: emulated
    ({"avx2": True, "avx512_bf16": True}, True),  # Cooper Lake, Zen 4
    ({"avx512_bf16": False, "amx_bf16": True, "amx_tile": True}, True),  # Sapphire Rapids
    ({"architecture": "arm64", "bf16": True}, False),  # not measured by the benchmark: stays float32
])
def test_a_cpu_is_native_with_avx512_bf16_or_amx(monkeypatch: pytest.MonkeyPatch, capabilities: dict, native: bool) -> None:
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities)
    assert native_bf16("cpu") is native
    assert resolve_dtype("auto", "cpu") == ("bfloat16" if native else "float32")


@pytest.mark.parametrize("supported", [True, False])
def test_a_gpu_counts_only_without_emulation(monkeypatch: pytest.MonkeyPatch, supported: bool) -> None:
    calls: list[dict] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device", lambda _device: nullcontext())
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda **kwargs: calls.append(kwargs) or supported)
    assert native_bf16("cuda:0") is supported
    assert resolve_dtype("auto", "auto") == ("bfloat16" if supported else "float32")
    assert calls == [{"including_emulation": False}] * 2  # a pre-Ampere GPU emulates bf16: float32 there


def test_without_a_gpu_cuda_is_not_native_and_other_devices_stay_float32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_device("cuda:1") == "cuda:1"
    assert native_bf16("cuda") is False
    assert native_bf16("mps") is False


def test_this_machine_resolves_to_a_concrete_dtype() -> None:
    capabilities = torch.cpu.get_capabilities()
    native_cpu = bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))
    assert resolve_dtype("auto", "cpu") == ("bfloat16" if native_cpu else "float32")


def test_model_spec_loads_in_the_resolved_dtype(monkeypatch: pytest.MonkeyPatch, tiny_model_path: Path) -> None:
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"amx_bf16": True})
    spec = ModelSpec(str(tiny_model_path), device="cpu")
    assert spec.dtype == "auto" and spec.torch_dtype() == torch.bfloat16
    assert next(load_model(spec).parameters()).dtype == torch.bfloat16
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx2": True})
    assert next(load_model(spec).parameters()).dtype == torch.float32


def test_a_whole_scoring_job_on_a_native_bf16_machine_ranks_as_float32(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_model_path: Path
) -> None:
    """The bfloat16 path end to end (load, tokenize, score, publish), on any CPU: the probe
    reports AVX512-BF16 (emulated on an AVX2 machine, but run). Every row records the resolved
    dtype, never "auto"."""
    assert hardware.AUTO == cli.parser().parse_args(["score"]).dtype  # the default is the rule
    args = ["score", "--model", str(tiny_model_path), "--n-problems", "40", "--shard-size", "16", "--device", "cpu"]
    frames = {}
    for capabilities, home in (({"avx512_bf16": True}, "bf16"), ({"avx2": True}, "fp32")):
        monkeypatch.setattr(torch.cpu, "get_capabilities", lambda capabilities=capabilities: capabilities)
        monkeypatch.setenv("GAINRL_HOME", str(tmp_path / home))
        assert cli.main(args) == 0
        (scores,) = (tmp_path / home).glob("scores/**/scores.parquet")
        frames[home] = pl.read_parquet(scores).sort("id")
    bf16, fp32 = frames["bf16"], frames["fp32"]
    assert bf16["dtype"].unique().to_list() == ["bfloat16"] and fp32["dtype"].unique().to_list() == ["float32"]
    assert bf16["id"].to_list() == fp32["id"].to_list() and bf16.height == 40
    assert bf16["angle_score"].is_finite().all()
    assert spearman(bf16["angle_score"].to_numpy(), fp32["angle_score"].to_numpy()) >= 0.99
