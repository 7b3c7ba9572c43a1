"""LILO's learnability sampler: prompts drawn in proportion to p(1 - p) of their pass rate p.

A prompt the policy always solves (p = 1) or never solves (p = 0) gives GRPO no signal (every
reward in its group is equal), and p(1 - p) is the variance of its reward: 1/4 at p = 1/2.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# The pass rate of a prompt with no estimate yet: the most learnable one, so it is tried soon.
PRIOR_PASS_RATE = 0.5


def learnability(pass_rates: np.ndarray) -> np.ndarray:
    """p(1 - p) of each pass rate, 0 outside [0, 1]."""
    p = np.asarray(pass_rates, dtype=np.float64)
    return np.clip(p * (1.0 - p), 0.0, None)


class LearnabilitySampler:
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
    rewards are not in it: they are the run's rollout records, which a resumed run replays
    through `observe`. `select(epoch)` for the epoch already drawn returns the same ranks.
    """

    def __init__(self, pass_rates: np.ndarray, subset_size: int, seed: int = 0, prior: float = PRIOR_PASS_RATE):
        n_prompts = len(pass_rates)
        if subset_size > n_prompts:
            raise ValueError(f"subset_size {subset_size} exceeds the {n_prompts} prompts")
        if not 0.0 <= prior <= 1.0:
            raise ValueError(f"the prior pass rate must lie in [0, 1], not {prior}")
        known = np.asarray(pass_rates, dtype=np.float64)
        self.initial = np.where(np.isnan(known), prior, known)
        self.subset_size = subset_size
        self.n_prompts = n_prompts
        self.latest = np.full(n_prompts, np.nan)
        self.history: list[dict[str, float]] = []
        self._rng = np.random.default_rng(seed)
        self._drawn: dict[int, np.ndarray] = {}

    @property
    def mu(self) -> float:
        """No window: the sampler has no mu (nor sigma)."""
        return float("nan")

    @property
    def sigma(self) -> float:
        return float("nan")

    def pass_rates(self) -> np.ndarray:
        """The current estimate of each prompt's pass rate."""
        return np.where(np.isnan(self.latest), self.initial, self.latest)

    def weights(self) -> np.ndarray:
        """The probability of each prompt as the first draw of the next epoch."""
        weights = learnability(self.pass_rates())
        total = weights.sum()
        return weights / total if total > 0 else np.full(self.n_prompts, 1.0 / self.n_prompts)

    def select(self, epoch: int) -> np.ndarray:
        if epoch not in self._drawn:
            self._drawn = {epoch: self._draw()}
        return self._drawn[epoch]

    def _draw(self) -> np.ndarray:
        weights = learnability(self.pass_rates())
        positive = np.flatnonzero(weights > 0)
        if len(positive) >= self.subset_size:
            return self._rng.choice(self.n_prompts, size=self.subset_size, replace=False, p=weights / weights.sum())
        rest = np.flatnonzero(weights <= 0)
        return np.concatenate([self._rng.permutation(positive), self._rng.choice(rest, size=self.subset_size - len(positive), replace=False)])

    def observe(self, ranks: np.ndarray, mean_rewards: np.ndarray) -> None:
        self.latest[np.asarray(ranks, dtype=np.int64)] = mean_rewards

    def update(self, accuracy: float, angle: float) -> None:
        self.history.append({"accuracy": accuracy, "angle": angle})

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": "learnability",
            "subset_size": self.subset_size,
            "n_prompts": self.n_prompts,
            "drawn": {str(k): v.tolist() for k, v in self._drawn.items()},
            "history": self.history,
            "rng": self._rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.subset_size = state["subset_size"]
        self._drawn = {int(k): np.asarray(v, dtype=np.int64) for k, v in state["drawn"].items()}
        self.history = state["history"]
        self._rng.bit_generator.state = state["rng"]
