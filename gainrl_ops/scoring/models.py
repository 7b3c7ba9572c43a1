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

__all__ = ["ModelSpec", "checkpoint_fingerprint", "eval_mode", "load_model", "load_tokenizer", "resolve_local"]
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class ModelSpec:
    """Which model to run and how.

    name_or_path: a Hugging Face id or a local folder written by `save_pretrained`.
    dtype: "float32", "bfloat16" or "float16".
    device: "auto" picks CUDA when present, else CPU.
    """

    name_or_path: str
    dtype: str = "float32"
    device: str = "auto"

    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def torch_dtype(self) -> torch.dtype:
        try:
            return _DTYPES[self.dtype]
        except KeyError:
            raise ValueError(f"dtype {self.dtype!r}: expected one of {sorted(_DTYPES)}") from None


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    tokenizer = AutoTokenizer.from_pretrained(str(resolve_local(name_or_path)))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(spec: ModelSpec) -> PreTrainedModel:
    """The model in eval mode on the spec's device and dtype."""
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
