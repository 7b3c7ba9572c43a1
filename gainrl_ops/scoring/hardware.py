"""Which device and floating-point type a model runs in: the one place "auto" is resolved.

The rule (`resolve_dtype`): "auto" means bfloat16 where the hardware runs it natively, else
float32. Natively means a CUDA (or ROCm) GPU that torch reports as supporting bfloat16 without
emulation (compute capability 8.0 or later: A100, H100, RTX 30xx and later), or a CPU with
AVX512-BF16 or AMX-BF16 instructions (Intel Cooper Lake, Sapphire Rapids and later; AMD Zen 4
and later). Elsewhere (older GPUs, AVX2-only CPUs, Apple MPS, ARM CPUs) bfloat16 is emulated or
unmeasured, so "auto" stays float32 there. `make bench` reports how closely the bfloat16
ranking agrees with the float32 one (Spearman); the rule may only send a device to bfloat16
where that agreement is at least 0.999 on the benchmark sets.

`GAINRL_AUTO_DTYPE` (one of `DTYPES`), when set, is what "auto" means instead of the probe's
answer: it pins one precision on every machine of a fleet (the test suite pins float32 this way,
so that its results do not depend on the CPU it runs on). float64 is for reference runs.

torch is imported inside the functions that ask the hardware, so reading the names below
(e.g. for a command's --help) costs nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable

AUTO = "auto"
DTYPES = ("float32", "bfloat16", "float16", "float64")
AUTO_DTYPE_ENV = "GAINRL_AUTO_DTYPE"


def resolve_device(device: str) -> str:
    """"auto" is CUDA when a GPU is visible, else the CPU; any other name is kept as given."""
    if device != AUTO:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def native_bf16(device: str) -> bool:
    """Whether `device` (a torch device name, not "auto") multiplies bfloat16 in hardware."""
    import torch

    target = torch.device(device)
    if target.type == "cuda":
        if not torch.cuda.is_available():
            return False
        with torch.cuda.device(target):  # is_bf16_supported asks the current device
            return torch.cuda.is_bf16_supported(including_emulation=False)
    if target.type == "cpu":
        capabilities = torch.cpu.get_capabilities()
        return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))
    return False


def resolve_dtype(requested: str, device: str, is_native: Callable[[str], bool] | None = None) -> str:
    """The dtype a model loads in and every score row records: `requested` itself when it names
    one of `DTYPES`; for "auto", $GAINRL_AUTO_DTYPE when set, else bfloat16 if
    `is_native(device)` (device "auto" resolved first), else float32.

    is_native: the hardware probe (default `native_bf16`, looked up when called); tests and
    benchmarks pass their own.
    """
    if requested in DTYPES:
        return requested
    if requested != AUTO:
        raise ValueError(f"dtype {requested!r}: expected {AUTO!r} or one of {', '.join(DTYPES)}")
    if pinned := os.environ.get(AUTO_DTYPE_ENV):
        if pinned not in DTYPES:
            raise ValueError(f"{AUTO_DTYPE_ENV}={pinned!r}: expected one of {', '.join(DTYPES)}")
        return pinned
    return "bfloat16" if (is_native or native_bf16)(resolve_device(device)) else "float32"
