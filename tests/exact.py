"""Models in float64 end to end, for tests that compare two computation paths of the same maths.

Loading a model in float64 is not enough: Llama/Qwen2/Mistral's RMSNorm computes in float32
whatever the model's dtype, which rounds every layer's activations (and gradients) to float32
precision wherever the two paths sum in another order, and on some CPU kernels more than others.
With the norm's formula kept in the model's dtype, the paths agree to float64 rounding on any CPU.
"""

from __future__ import annotations

import types

import torch

EXACT = 1e-9


def _rms_norm_in_model_dtype(norm: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    return norm.weight * (hidden * torch.rsqrt(hidden.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon))


def float64_model(model: torch.nn.Module) -> torch.nn.Module:
    """`model` in float64, its RMSNorms (modules with a `variance_epsilon`) computing in float64."""
    model = model.double()
    for module in model.modules():
        if hasattr(module, "variance_epsilon") and isinstance(getattr(module, "weight", None), torch.nn.Parameter):
            module.forward = types.MethodType(_rms_norm_in_model_dtype, module)
    return model
