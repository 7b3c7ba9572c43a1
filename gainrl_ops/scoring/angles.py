"""The angle-concentration score of GAIN-RL, computed with the sum identity in O(L*d)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gainrl_ops.scoring.config import DEFAULT_INTER_WEIGHT


@dataclass(frozen=True)
class AngleScores:
    """Per-prompt components, each a tensor of shape [batch]: float32, or float64 when the
    hidden states are float64."""

    c_intra: torch.Tensor
    c_inter: torch.Tensor
    angle_score: torch.Tensor


def angle_concentration(
    hidden: torch.Tensor,
    question_mask: torch.Tensor,
    system_mask: torch.Tensor,
    inter_weight: float = DEFAULT_INTER_WEIGHT,
) -> AngleScores:
    """Angle concentration of each prompt's hidden states.

    With u_i = h_i / ||h_i|| the unit token vectors, Q the question tokens and S the
    system-prompt tokens of a prompt:

        c_intra     = mean of u_i . u_j over distinct pairs i != j in Q
                    = (||s_Q||^2 - |Q|) / (|Q| (|Q| - 1)),      s_Q = sum_{i in Q} u_i
        c_inter     = mean of u_i . u_j over i in Q, j in S  = (s_Q . s_S) / (|Q| |S|)
        angle_score = c_intra + inter_weight * c_inter

    The identity sum_{i,j in Q} u_i . u_j = ||s_Q||^2 avoids the L x L cosine matrix.
    c_intra is NaN when |Q| < 2 (no pairs); c_inter is 0 when there is no system prompt.

    hidden: [batch, length, d] in any dtype; summed in float32 (float64 stays float64).
    question_mask, system_mask: [batch, length] booleans. Masked-out positions (padding
    included) are selected away, never multiplied, so garbage there cannot leak in.
    """
    h = hidden.to(torch.promote_types(hidden.dtype, torch.float32))
    unit = h / h.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(h.dtype).tiny)
    zero = unit.new_zeros(())
    s_q = torch.where(question_mask[..., None], unit, zero).sum(dim=1)
    s_s = torch.where(system_mask[..., None], unit, zero).sum(dim=1)
    n_q = question_mask.sum(dim=1).to(h.dtype)
    n_s = system_mask.sum(dim=1).to(h.dtype)
    c_intra = (s_q.square().sum(dim=1) - n_q) / (n_q * (n_q - 1))
    c_intra = torch.where(n_q >= 2, c_intra, torch.nan)
    c_inter = torch.where(n_s > 0, (s_q * s_s).sum(dim=1) / (n_q * n_s).clamp_min(1), 0.0)
    return AngleScores(c_intra, c_inter, c_intra + inter_weight * c_inter)
