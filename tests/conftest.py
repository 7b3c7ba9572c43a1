"""Shared fixtures: a small embedded model built once per session, and a private storage root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gainrl_ops.data.arithmetic import ArithmeticConfig
from gainrl_ops.scoring.hardware import AUTO_DTYPE_ENV
from gainrl_ops.training.embedded import EmbeddedModelConfig, embedded_model_path

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Small enough to build in seconds through the same code path as the default build, and
# trained on one-step single-digit problems so that GRPO sees some correct rollouts.
TINY = EmbeddedModelConfig(
    data=ArithmeticConfig(n_problems=1500, seed=7, max_steps=1, max_digits=1),
    vocab_size=400,
    hidden_size=64,
    intermediate_size=128,
    num_layers=2,
    num_heads=2,
    num_kv_heads=1,
    sft_steps=200,
    batch_size=32,
    learning_rate=1e-2,
    eval_problems=64,
)


def pytest_configure(config: pytest.Config) -> None:
    """"auto" means float32 in every test, on every CPU, in this process and in every process it
    starts (Dagster steps, CLI runs): otherwise it is bfloat16 on AVX512-BF16 machines only.
    Tests of the dtype rule unset it and inject the hardware probe; tests that compare two
    computation paths load float64."""
    os.environ[AUTO_DTYPE_ENV] = "float32"


@pytest.fixture(autouse=True)
def gainrl_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test writes under its own storage root, never into the checkout."""
    home = tmp_path / "gainrl_home"
    monkeypatch.setenv("GAINRL_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return embedded_model_path(TINY, root=tmp_path_factory.mktemp("models"))
