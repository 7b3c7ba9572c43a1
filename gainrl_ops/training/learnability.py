"""LILO's learnability sampler: prompts drawn in proportion to p(1 - p) of their pass rate p.

A prompt the policy always solves (p = 1) or never solves (p = 0) gives GRPO no signal (every
reward in its group is equal), and p(1 - p) is the variance of its reward: 1/4 at p = 1/2.
"""

from __future__ import annotations

import numpy as np

from gainrl_ops.training.sampling import RewardSampler

# The pass rate of a prompt with no estimate yet: the most learnable one, so it is tried soon.
PRIOR_PASS_RATE = 0.5


def learnability(pass_rates: np.ndarray) -> np.ndarray:
    """p(1 - p) of each pass rate, 0 outside [0, 1]."""
    p = np.asarray(pass_rates, dtype=np.float64)
    return np.clip(p * (1.0 - p), 0.0, None)


class LearnabilitySampler(RewardSampler):
    """Each epoch, `subset_size` distinct prompts drawn in proportion to p(1 - p).

    p starts as the base checkpoint's pass rate of each prompt (`pass_rates`, aligned with the
    ranks; NaN where a prompt has none, which then gets `prior`, 0.5 by default) and becomes the
    latest mean group reward of the prompt once it is trained on (`observe`), not a running
    average: the policy moves, and an old pass rate describes an older policy.

    Without replacement, so an epoch is a set of distinct prompts as in the other subset
    samplers and each prompt's rollouts form one group: the first draw of an epoch is in
    proportion to p(1 - p), each later one in proportion to it among the prompts not yet drawn
    (successive sampling; with subset_size = 1 the draws are exactly proportional). When fewer
    than `subset_size` prompts have p(1 - p) > 0, the epoch takes all of them and fills up
    uniformly from the rest.

    `state_dict()` holds the RNG, the epoch drawn and the history of feedback; the observed
    rewards are not in it (see `RewardSampler`).
    """

    kind = "learnability"

    def __init__(self, pass_rates: np.ndarray, subset_size: int, seed: int = 0, prior: float = PRIOR_PASS_RATE):
        if subset_size > len(pass_rates):
            raise ValueError(f"subset_size {subset_size} exceeds the {len(pass_rates)} prompts")
        if not 0.0 <= prior <= 1.0:
            raise ValueError(f"the prior pass rate must lie in [0, 1], not {prior}")
        super().__init__(subset_size, len(pass_rates), seed)
        known = np.asarray(pass_rates, dtype=np.float64)
        self.initial = np.where(np.isnan(known), prior, known)

    def pass_rates(self) -> np.ndarray:
        """The current estimate of each prompt's pass rate."""
        return np.where(np.isnan(self.latest), self.initial, self.latest)

    def weights(self) -> np.ndarray:
        """The probability of each prompt as the first draw of the next epoch."""
        weights = learnability(self.pass_rates())
        total = weights.sum()
        return weights / total if total > 0 else np.full(self.n_prompts, 1.0 / self.n_prompts)

    def _draw(self) -> np.ndarray:
        weights = learnability(self.pass_rates())
        positive = np.flatnonzero(weights > 0)
        if len(positive) >= self.subset_size:
            return self._rng.choice(self.n_prompts, size=self.subset_size, replace=False, p=weights / weights.sum())
        rest = np.flatnonzero(weights <= 0)
        return np.concatenate([self._rng.permutation(positive), self._rng.choice(rest, size=self.subset_size - len(positive), replace=False)])
