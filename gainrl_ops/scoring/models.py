"""Load any Hugging Face causal LM by id or path, and fingerprint checkpoints by content."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from gainrl_ops.scoring.checkpoints import checkpoint_fingerprint, resolve_local
from gainrl_ops.scoring.hardware import AUTO, resolve_device, resolve_dtype

__all__ = ["ModelSpec", "checkpoint_fingerprint", "eval_mode", "load_model", "load_tokenizer", "resolve_local"]


@dataclass(frozen=True)
class ModelSpec:
    """Which model to run and how.

    name_or_path: a Hugging Face id or a local folder written by `save_pretrained`.
    dtype: "auto" (bfloat16 where the hardware runs it natively, else float32; see
        `hardware.resolve_dtype`), "float32", "bfloat16" or "float16".
    device: "auto" picks CUDA when present, else CPU.
    """

    name_or_path: str
    dtype: str = AUTO
    device: str = AUTO

    def torch_device(self) -> torch.device:
        return torch.device(resolve_device(self.device))

    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, resolve_dtype(self.dtype, self.device))


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    tokenizer = AutoTokenizer.from_pretrained(str(resolve_local(name_or_path)))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(spec: ModelSpec) -> PreTrainedModel:
    """The model in eval mode on the spec's device and dtype.

    Attention is transformers' default: SDPA (fused kernels on CUDA) where the architecture has
    it, eager otherwise. Scoring reads only the input of the last layer's MLP, never attention
    weights, so nothing here needs eager attention."""
    model = AutoModelForCausalLM.from_pretrained(
        str(resolve_local(spec.name_or_path)), dtype=spec.torch_dtype()
    )
    return model.to(spec.torch_device()).eval()


@contextmanager
def eval_mode(model: PreTrainedModel) -> Iterator[None]:
    """Dropout off for a measurement (e.g. in the middle of training), then back as it was."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
