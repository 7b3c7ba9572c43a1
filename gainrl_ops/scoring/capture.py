"""Capture the input of the last decoder layer's MLP and stop the forward pass there.

A forward pre-hook on that MLP records its input and raises, so the MLP itself, the final
norm and the LM head (the largest matmul of a big-vocabulary model) never run.

Prompts that start with the same tokens (chat-template head, system prompt, few-shot turns)
have the same hidden states there under causal attention: `run_prefix` computes them once
with the key/value cache of every layer, and `suffix_mlp_input` runs only each prompt's own
tokens on top of that cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import DynamicCache
from transformers.cache_utils import get_layer_types_and_kwargs

# Where common architectures keep their stack of decoder blocks.
_LAYER_PATHS = ("model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers", "transformer.blocks")
_MLP_NAMES = ("mlp", "feed_forward", "ffn")
# Cache layers that keep every token they were given (a sliding window does while it is not full).
_CACHEABLE = {"full_attention", "sliding_attention"}


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


def last_mlp_input(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    past_key_values: DynamicCache | None = None,
    position_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Hidden states entering the last layer's MLP, shape [batch, length, d].

    With `past_key_values`, `input_ids` continue the cached tokens and `attention_mask`
    covers cached + new tokens. The cache is extended in place, the last layer's included:
    its attention runs before the hook stops the pass.
    """

    def hook(_module: nn.Module, args: tuple, kwargs: dict) -> None:
        raise _Captured(args[0] if args else next(iter(kwargs.values())))

    handle = last_mlp(model).register_forward_pre_hook(hook, with_kwargs=True)
    try:
        model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            use_cache=past_key_values is not None,
        )
    except _Captured as captured:
        return captured.hidden
    finally:
        handle.remove()
    raise RuntimeError("the forward pass finished without reaching the last layer's MLP")


@dataclass(frozen=True)
class SharedPrefix:
    """The tokens every prompt of a batch starts with, run once.

    hidden: [length, d], their last-MLP inputs; keys_values: per decoder layer, the cached
    key and value states, each [1, heads, length, head_dim].
    """

    input_ids: tuple[int, ...]
    hidden: torch.Tensor
    keys_values: tuple[tuple[torch.Tensor, torch.Tensor], ...]


def prefix_limit(model: nn.Module) -> tuple[int | None, str | None]:
    """(most prefix tokens the model's caches keep whole, None for no limit; why the model
    cannot reuse a prefix at all, None when it can). The layer types are the ones
    `DynamicCache(config=...)` builds its layers from."""
    if hasattr(model, "_supports_default_dynamic_cache") and not model._supports_default_dynamic_cache():
        return None, f"{type(model).__name__} does not run on a DynamicCache"
    types, kwargs = get_layer_types_and_kwargs(model.config.get_text_config(decoder=True))
    if other := set(types) - _CACHEABLE:
        return None, f"its layer types {sorted(other)} keep no plain key/value cache"
    # A sliding-window layer keeps the last `sliding_window - 1` tokens it was given.
    windows = [kw["sliding_window"] - 1 for t, kw in zip(types, kwargs, strict=True) if t == "sliding_attention"]
    return (min(windows) if windows else None), None


@torch.inference_mode()
def run_prefix(model: nn.Module, input_ids: Sequence[int]) -> SharedPrefix | None:
    """Run `input_ids` once and keep what the rest of a prompt needs; None when the model
    does not fill a key/value cache for each decoder layer (then run full prompts)."""
    device = model.device
    cache = DynamicCache(config=model.config)
    ids = torch.tensor([list(input_ids)], device=device)
    hidden = last_mlp_input(model, ids, torch.ones_like(ids), cache)
    layers = len(decoder_layers(model))
    filled = [(layer.keys, layer.values) for layer in cache.layers if getattr(layer, "keys", None) is not None]
    if len(cache.layers) != layers or len(filled) != layers or any(k.shape[-2] != len(input_ids) for k, _ in filled):
        return None
    return SharedPrefix(tuple(input_ids), hidden[0], tuple(filled))


def broadcast_cache(keys_values: Sequence[tuple[torch.Tensor, torch.Tensor]], batch: int, config: object) -> DynamicCache:
    """A cache holding one sequence's keys and values (per layer, each [1, heads, length,
    head_dim]) for every row of a batch, as views, without copies. A forward appends to the
    cache it is given, so every batch needs a fresh one; the states themselves stay untouched."""
    return DynamicCache(((k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in keys_values), config=config)


def suffix_mlp_input(model: nn.Module, prefix: SharedPrefix, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Last-MLP inputs of prompts that continue `prefix`, shape [batch, prefix + suffix, d].

    input_ids: [batch, suffix] (right-padded); attention_mask: [batch, prefix + suffix].
    """
    batch, width = input_ids.shape
    cache = broadcast_cache(prefix.keys_values, batch, model.config)
    start = len(prefix.input_ids)
    positions = torch.arange(start, start + width, device=input_ids.device).expand(batch, -1)
    hidden = last_mlp_input(model, input_ids, attention_mask, cache, positions)
    return torch.cat([prefix.hidden.expand(batch, -1, -1).to(hidden.dtype), hidden], dim=1)
