"""GAIN-RL's feedback angle: how concentrated the hidden states of an epoch's rollouts are.

Each rollout sequence (prompt plus completion, exactly as generated) is prefilled under the
current policy up to the input of the last decoder layer's MLP; the rollout's angle is the
mean cosine over distinct pairs of its token vectors (pads excluded), from the sum identity.
The epoch's angle is the mean over its rollouts, a number in [-1, 1]. The prompt ranking
score c_intra + 8 * c_inter (about 4-8) would instead pin tanh(alpha * angle) at 1 in the
controller and turn it into a fixed-speed sweep.

Each prompt's group of rewards is kept too (`group_rewards`): the `rollouts` records, and what
the reward-based samplers observe.

No TRL import here: the trainer calls `RolloutAngles.measure` on each generation batch, and
`rollout_feedback` reduces an epoch's angles and rewards over all processes.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
import torch
from transformers import PreTrainedModel

from gainrl_ops.scoring.angles import angle_concentration
from gainrl_ops.scoring.capture import last_mlp_input
from gainrl_ops.scoring.models import eval_mode
from gainrl_ops.training.ranks import gather_from_processes, sum_over_processes


def mean_pairwise_cosine(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean cosine over distinct pairs of the masked tokens of each sequence, shape [batch]:
    `c_intra` with the whole masked sequence as its span (NaN under 2 tokens).

    hidden: [batch, length, d]; mask: [batch, length] booleans, False for pads."""
    return angle_concentration(hidden, mask, torch.zeros_like(mask)).c_intra


@torch.no_grad()
def rollout_angles(
    model: PreTrainedModel,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    batch_size: int = 64,
) -> torch.Tensor:
    """The feedback angle of each rollout, shape [batch].

    TRL pads prompts on the left and completions on the right. Each row's real tokens are
    packed to the left before the prefill, so they sit at positions 0..n-1 as they did when
    generated, and the pads after them (which causal attention never lets a real token see)
    are out of every sum.
    """
    ids = torch.cat([prompt_ids, completion_ids], dim=1)
    mask = torch.cat([prompt_mask, completion_mask], dim=1).bool()
    # A stable sort on "is a pad" moves the real tokens to the front, in their order.
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
    lengths = mask.sum(dim=1)
    width = int(lengths.max()) if len(lengths) else 0
    packed = torch.gather(ids, 1, order)[:, :width]
    real = torch.arange(width, device=ids.device)[None, :] < lengths[:, None]
    out = []
    with eval_mode(model):
        for start in range(0, len(packed), batch_size):
            rows = slice(start, start + batch_size)
            hidden = last_mlp_input(model, packed[rows].to(model.device), real[rows].long().to(model.device))
            out.append(mean_pairwise_cosine(hidden, real[rows].to(hidden.device)).cpu())
    return torch.cat(out) if out else torch.empty(0)


class RolloutAngles:
    """The feedback angle of every rollout generated since the last `take()`, and the seconds
    its prefills took. Instance state shared by the trainer (which measures) and the epoch
    callback (which takes), not a module-level list."""

    def __init__(self, batch_size: int = 64) -> None:
        self.batch_size = batch_size
        self.values: list[float] = []
        self.seconds = 0.0

    def measure(self, model: PreTrainedModel, batch: dict[str, Any]) -> None:
        """Add the angles of a generation batch as TRL's `_generate_and_score_completions` returns it."""
        started = time.perf_counter()
        angles = rollout_angles(
            model, batch["prompt_ids"], batch["prompt_mask"], batch["completion_ids"], batch["completion_mask"], self.batch_size
        )
        self.values += angles.tolist()
        self.seconds += time.perf_counter() - started

    def take(self) -> tuple[float, int, float]:
        """(sum and count of the rollout angles since the last take, NaNs left out; seconds
        spent), then reset."""
        values, seconds = torch.tensor(self.values, dtype=torch.float64), self.seconds
        self.values, self.seconds = [], 0.0
        return float(torch.nansum(values)), int((~values.isnan()).sum()), seconds


@dataclass(frozen=True)
class RolloutFeedback:
    """An epoch's feedback over the rollouts of every process: mean reward and mean feedback
    angle (NaN where there were none), and this process's seconds of angle prefills."""

    accuracy: float
    angle: float
    seconds: float


def rollout_feedback(rewards: Sequence[float], angles: RolloutAngles) -> RolloutFeedback:
    """Take this process's rewards and angles and reduce them over all processes, as sums and
    counts, so every rank's sampler gets the same feedback (each rank scored only its slice)."""
    angle_sum, angle_count, seconds = angles.take()
    reward_sum, reward_count, angle_sum, angle_count = sum_over_processes([sum(rewards), len(rewards), angle_sum, angle_count])
    return RolloutFeedback(
        accuracy=reward_sum / reward_count if reward_count else float("nan"),
        angle=angle_sum / angle_count if angle_count else float("nan"),
        seconds=seconds,
    )


def group_rewards(ids: Sequence[str], rewards: Sequence[float]) -> pl.DataFrame:
    """One row per prompt id, sorted by id: n (its completions), mean_reward, reward_std (sample
    std, ddof 1, as TRL scales advantages by; NaN for one completion) and all_equal (every
    reward the same, so GRPO's advantages are all 0).

    The sums are exactly rounded (`math.fsum`), so the values do not depend on the order the
    rewards came in, e.g. from how many processes."""
    groups: dict[str, list[float]] = defaultdict(list)
    for prompt_id, reward in zip(ids, rewards, strict=True):
        groups[prompt_id].append(float(reward))
    rows = []
    for prompt_id in sorted(groups):
        values = groups[prompt_id]
        n = len(values)
        mean = math.fsum(values) / n
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
        rows.append((prompt_id, n, mean, std, min(values) == max(values)))
    return pl.DataFrame(
        rows, orient="row",
        schema={"id": pl.String, "n": pl.Int32, "mean_reward": pl.Float64, "reward_std": pl.Float64, "all_equal": pl.Boolean},
    )


def gathered_groups(ids: Sequence[str], rewards: Sequence[float]) -> pl.DataFrame:
    """`group_rewards` over the rollouts of every process (each scored only its slice), the
    same table on every process."""
    pairs = gather_from_processes(list(zip(ids, rewards, strict=True)))
    return group_rewards([i for i, _ in pairs], [r for _, r in pairs])
