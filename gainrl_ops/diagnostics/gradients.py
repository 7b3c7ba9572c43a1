"""How hard one prompt pushes the weights: its gradient norm under the GRPO objective.

Everything follows what TRL 1.16's `GRPOTrainer` does with its defaults (on-policy, one
iteration, beta = 0, rewards scaled per group, loss_type "dapo"), so a gradient norm here is
the size of the update the prompt would contribute during training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from gainrl_ops.training.evaluation import completion_mask, eos_token_ids
from gainrl_ops.training.rewards import correctness_reward

# TRL adds this to the group's reward std before dividing.
ADVANTAGE_EPS = 1e-4


def group_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """A_i = (r_i - mean(r)) / (std(r) + 1e-4) over one prompt's group of completions, with
    the sample std (Bessel's correction), as TRL's `scale_rewards="group"`."""
    rewards = rewards.double()
    return (rewards - rewards.mean()) / (rewards.std(correction=1) + ADVANTAGE_EPS)


def grpo_loss(logps: torch.Tensor, mask: torch.Tensor, advantages: torch.Tensor, max_completion_length: int) -> torch.Tensor:
    """One group's share of TRL's default GRPO loss, on-policy.

    L = -1 / (G * T) * sum_{i, t} mask_it * A_i * exp(logp_it - sg(logp_it))

    for G completions, per-token log-probabilities logp_it, advantages A_i and T =
    max_completion_length. The ratio exp(logp - sg(logp)) is 1 in value, so PPO clipping
    never acts and dL/dθ = -1 / (G T) * sum mask_it A_i ∇logp_it. TRL ("dapo") divides by
    the token count of the whole batch, which is the same for every prompt in it; G * T is
    that constant for a one-group batch, so norms compare across prompts as their shares
    of one training update do.
    """
    ratio = torch.exp(logps - logps.detach())
    per_token = -ratio * advantages[:, None].to(logps.dtype)
    return (per_token * mask).sum() / (logps.shape[0] * max_completion_length)


def nll_loss(logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood per token: -sum(mask * logp) / sum(mask)."""
    return -(logps * mask).sum() / mask.sum().clamp(min=1)


def gradient_norm(model: PreTrainedModel, loss: torch.Tensor) -> float:
    """||∇θ L||_2 over every trainable parameter (.grad is left untouched)."""
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return float(torch.sqrt(sum(g.double().pow(2).sum() for g in grads if g is not None)))


def completion_logps(
    model: PreTrainedModel,
    prompt_ids: Sequence[int],
    completion_ids: torch.Tensor,
    mask: torch.Tensor,
    temperature: float = 1.0,
) -> torch.Tensor:
    """log p(c_it | prompt, c_i<t) of each completion token, [G, T], with the graph kept.
    Logits are divided by the sampling temperature first, as TRL does."""
    device = model.device
    group = completion_ids.shape[0]
    prompt = torch.as_tensor(list(prompt_ids), device=device).expand(group, -1)
    input_ids = torch.cat([prompt, completion_ids.to(device)], dim=1)
    attention = torch.cat([torch.ones_like(prompt), mask.to(device).long()], dim=1)
    logits = model(input_ids=input_ids, attention_mask=attention).logits
    # Position p predicts token p + 1: the completion is predicted from the last prompt position on.
    logits = logits[:, prompt.shape[1] - 1 : -1].float() / temperature
    return torch.log_softmax(logits, dim=-1).gather(-1, input_ids[:, prompt.shape[1] :, None]).squeeze(-1)


@dataclass(frozen=True)
class Rollouts:
    """A prompt's sampled completions: ids [G, T] (padded after the end), their mask, and rewards."""

    completion_ids: torch.Tensor
    mask: torch.Tensor
    rewards: torch.Tensor


@torch.no_grad()
def sample_rollouts(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Sequence[int]],
    answers: Sequence[str],
    num_generations: int,
    max_completion_length: int,
    temperature: float = 1.0,
) -> list[Rollouts]:
    """`num_generations` sampled completions per prompt (plain temperature sampling, no top-k
    or top-p, as TRL's defaults), scored with the training reward `correctness_reward`.
    Prompts are left-padded into one batch; draws come from torch's global generator."""
    pad = tokenizer.pad_token_id
    width = max(len(p) for p in prompts)
    batch = torch.full((len(prompts), width), pad, dtype=torch.long)
    attention = torch.zeros_like(batch)
    for row, ids in enumerate(prompts):
        batch[row, width - len(ids) :] = torch.as_tensor(list(ids))
        attention[row, width - len(ids) :] = 1
    eos = eos_token_ids(model, tokenizer)
    out = model.generate(
        input_ids=batch.to(model.device),
        attention_mask=attention.to(model.device),
        do_sample=True,
        temperature=temperature,
        top_k=0,
        top_p=1.0,
        max_new_tokens=max_completion_length,
        num_return_sequences=num_generations,
        pad_token_id=pad,
        eos_token_id=eos,
    )
    completions = out[:, width:].cpu()
    mask = completion_mask(completions, eos)
    texts = tokenizer.batch_decode(completions * mask.long() + pad * (1 - mask.long()), skip_special_tokens=True)
    rollouts = []
    for i, answer in enumerate(answers):
        rows = slice(i * num_generations, (i + 1) * num_generations)
        rewards = torch.tensor([correctness_reward(t, answer) for t in texts[rows]])
        rollouts.append(Rollouts(completions[rows], mask[rows], rewards))
    return rollouts
