"""Models in float64 end to end, for tests that compare two computation paths of the same maths.

Loading a model in float64 is not enough: Llama/Qwen2/Mistral's RMSNorm and rotary embedding
compute in float32 whatever the model's dtype, which rounds every layer's activations (and
gradients) to float32 precision wherever the two paths sum in another order, and on some CPU
kernels more than others. `float64_model` keeps them in the model's dtype, so the paths agree to
float64 rounding on any CPU.
"""

from __future__ import annotations

from gainrl_ops.training.float64 import float64_model

__all__ = ["EXACT", "float64_model"]

EXACT = 1e-9
