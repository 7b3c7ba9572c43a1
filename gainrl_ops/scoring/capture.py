"""Capture the input of the last decoder layer's MLP and stop the forward pass there.

A forward pre-hook on that MLP records its input and raises, so the MLP itself, the final
norm and the LM head (the largest matmul of a big-vocabulary model) never run.
"""

from __future__ import annotations

import torch
from torch import nn

# Where common architectures keep their stack of decoder blocks.
_LAYER_PATHS = ("model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers", "transformer.blocks")
_MLP_NAMES = ("mlp", "feed_forward", "ffn")


class _Captured(Exception):
    """Raised by the hook to abandon the rest of the forward pass."""

    def __init__(self, hidden: torch.Tensor):
        self.hidden = hidden


def _get(module: nn.Module, path: str) -> nn.Module | None:
    for name in path.split("."):
        module = getattr(module, name, None)
        if module is None:
            return None
    return module


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The model's decoder blocks: a known attribute path, else its longest ModuleList."""
    for path in _LAYER_PATHS:
        layers = _get(model, path)
        if isinstance(layers, nn.ModuleList) and len(layers) > 0:
            return layers
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        raise ValueError(f"{type(model).__name__}: no stack of decoder layers found")
    return max(lists, key=len)


def last_mlp(model: nn.Module) -> nn.Module:
    """The MLP of the last decoder layer (Llama, Qwen2, Mistral, GPT-2, GPT-NeoX, ...)."""
    layer = decoder_layers(model)[-1]
    for name in _MLP_NAMES:
        if isinstance(mlp := getattr(layer, name, None), nn.Module):
            return mlp
    raise ValueError(f"{type(layer).__name__}: no MLP submodule among {_MLP_NAMES}")


def last_mlp_input(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Hidden states entering the last layer's MLP, shape [batch, length, d]."""

    def hook(_module: nn.Module, args: tuple, kwargs: dict) -> None:
        raise _Captured(args[0] if args else next(iter(kwargs.values())))

    handle = last_mlp(model).register_forward_pre_hook(hook, with_kwargs=True)
    try:
        model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    except _Captured as captured:
        return captured.hidden
    finally:
        handle.remove()
    raise RuntimeError("the forward pass finished without reaching the last layer's MLP")
