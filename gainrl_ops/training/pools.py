"""prime-rl's difficulty pools: prompts weighted by the pool their latest mean group reward falls in."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gainrl_ops.training.sampling import RewardSampler


@dataclass(frozen=True)
class Pool:
    """A pool holds the prompts whose latest mean reward is at most `threshold` (and above the
    previous pool's); each of them is drawn with `weight`."""

    name: str
    threshold: float
    weight: float


# prime-rl's defaults: the hard and easy ends are drawn a fifth as often as the middle.
DEFAULT_POOLS = (Pool("hard", 0.25, 0.2), Pool("normal", 0.75, 1.0), Pool("easy", 1.0, 0.2))
UNSEEN_WEIGHT = 1.0


def pool_weights(latest: np.ndarray, pools: tuple[Pool, ...] = DEFAULT_POOLS, unseen: float = UNSEEN_WEIGHT) -> np.ndarray:
    """Each prompt's weight: `unseen` for NaN (never trained on), else the weight of the first
    pool (by threshold) whose threshold the reward does not exceed, inclusive; a reward above
    every threshold falls in the last pool, the catch-all."""
    ordered = sorted(pools, key=lambda pool: pool.threshold)
    rewards = np.asarray(latest, dtype=np.float64)
    thresholds = np.array([pool.threshold for pool in ordered])
    index = np.minimum(np.searchsorted(thresholds, rewards, side="left"), len(ordered) - 1)
    weights = np.array([pool.weight for pool in ordered])[index]
    return np.where(np.isnan(rewards), unseen, weights)


class PoolSampler(RewardSampler):
    """prime-rl's `DifficultyPoolSampler` with its defaults: hard (mean reward <= 0.25, weight
    0.2), normal (<= 0.75, weight 1.0), easy (<= 1.0, weight 0.2), unseen prompts weight 1.0;
    inclusive thresholds; drawn with replacement in proportion to the weights. A prompt's
    reward is its latest mean group reward (`observe`).

    Differences from prime-rl:
    - an epoch draws `subset_size` prompts at once, with the weights as they stood after the
      previous epoch; prime-rl draws one task at a time and observes each group as it finishes;
    - a prompt drawn more than once in an epoch gets the mean over all its rollouts of the
      epoch (its `rollouts` row); prime-rl keeps the last group's;
    - numpy's Generator instead of Python's `random.Random`;
    - `state_dict()` holds the RNG, the epoch drawn and the history of feedback, not the
      per-prompt rewards: those are the run's rollout records, which a resumed run replays
      through `observe` (prime-rl saves them with the RNG).
    """

    kind = "pool"

    def __init__(self, subset_size: int, n_prompts: int, seed: int = 0, pools: tuple[Pool, ...] = DEFAULT_POOLS):
        if not pools:
            raise ValueError("the pool sampler needs at least one pool")
        super().__init__(subset_size, n_prompts, seed)
        self.pools = pools

    def weights(self) -> np.ndarray:
        """The probability of each prompt on every draw of the next epoch."""
        weights = pool_weights(self.latest, self.pools)
        if not weights.any():
            raise RuntimeError("the pool sampler has no prompt in a pool with positive weight")
        return weights / weights.sum()

    def _draw(self) -> np.ndarray:
        return self._rng.choice(self.n_prompts, size=self.subset_size, replace=True, p=self.weights())
