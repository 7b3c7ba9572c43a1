"""Models that compute in float64 end to end, for results that must not depend on the CPU.

Casting a model to float64 is not enough. Llama/Qwen2/Mistral's RMSNorm computes in float32
whatever the model's dtype, their rotary embedding computes its angles, cosines and sines in
float32, and transformers' causal-LM loss casts the logits to float32. Each of these rounds to
float32 precision, by kernels (vectorised cos/sin/pow, reductions) that differ in the last bit
between ATen's CPU kernels; kept in float64, two CPUs differ only at float64 rounding.
"""

from __future__ import annotations

import types

import torch


def _rms_norm_in_model_dtype(norm: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    return norm.weight * (hidden * torch.rsqrt(hidden.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon))


def _rotary_in_buffer_dtype(rotary: torch.nn.Module, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    freqs = position_ids[..., None].to(rotary.inv_freq.dtype) * rotary.inv_freq
    angles = torch.cat((freqs, freqs), dim=-1)
    return (angles.cos() * rotary.attention_scaling).to(x.dtype), (angles.sin() * rotary.attention_scaling).to(x.dtype)


def _inv_freq_in_float64(rotary: torch.nn.Module) -> torch.Tensor | None:
    """The default RoPE inverse frequencies recomputed in float64, or None where the module's
    are not the default formula's (another base, scaling, a layout this does not know)."""
    if getattr(rotary, "rope_type", None) != "default" or not isinstance(getattr(rotary, "inv_freq", None), torch.Tensor):
        return None
    theta = (getattr(rotary.config, "rope_parameters", None) or {}).get("rope_theta")
    if not isinstance(theta, (int, float)):
        return None
    dim = 2 * rotary.inv_freq.numel()
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    return inv_freq if torch.allclose(inv_freq, rotary.inv_freq.double(), rtol=1e-6, atol=0) else None


def causal_lm_loss_in_model_dtype(
    logits: torch.Tensor, labels: torch.Tensor, vocab_size: int, num_items_in_batch=None, ignore_index: int = -100, **_
) -> torch.Tensor:
    """transformers' causal-LM loss without its cast of the logits to float32."""
    shifted = torch.nn.functional.pad(labels, (0, 1), value=ignore_index)[..., 1:]
    reduction = "mean" if num_items_in_batch is None else "sum"
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, vocab_size), shifted.reshape(-1), ignore_index=ignore_index, reduction=reduction
    )
    return loss if num_items_in_batch is None else loss / num_items_in_batch


def float64_model(model: torch.nn.Module) -> torch.nn.Module:
    """`model` in float64, its RMSNorms (modules with a `variance_epsilon`) and default rotary
    embeddings (inverse frequencies recomputed in float64) computing in float64. The loss is left alone: set
    `model.loss_function = causal_lm_loss_in_model_dtype` where the loss must stay float64."""
    model = model.double()
    for module in model.modules():
        if hasattr(module, "variance_epsilon") and isinstance(getattr(module, "weight", None), torch.nn.Parameter):
            module.forward = types.MethodType(_rms_norm_in_model_dtype, module)
        if (inv_freq := _inv_freq_in_float64(module)) is not None:
            module.inv_freq = inv_freq
            module.forward = types.MethodType(_rotary_in_buffer_dtype, module)
    return model
