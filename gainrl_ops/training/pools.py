"""prime-rl's difficulty pools: prompts weighted by the pool their latest mean group reward falls in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


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


class PoolSampler:
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

    `select(epoch)` for the epoch already drawn returns the same ranks.
    """

    def __init__(self, subset_size: int, n_prompts: int, seed: int = 0, pools: tuple[Pool, ...] = DEFAULT_POOLS):
        if not pools:
            raise ValueError("the pool sampler needs at least one pool")
        self.subset_size = subset_size
        self.n_prompts = n_prompts
        self.pools = pools
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

    def weights(self) -> np.ndarray:
        """The probability of each prompt on every draw of the next epoch."""
        weights = pool_weights(self.latest, self.pools)
        if not weights.any():
            raise RuntimeError("the pool sampler has no prompt in a pool with positive weight")
        return weights / weights.sum()

    def select(self, epoch: int) -> np.ndarray:
        if epoch not in self._drawn:
            self._drawn = {epoch: self._rng.choice(self.n_prompts, size=self.subset_size, replace=True, p=self.weights())}
        return self._drawn[epoch]

    def observe(self, ranks: np.ndarray, mean_rewards: np.ndarray) -> None:
        self.latest[np.asarray(ranks, dtype=np.int64)] = mean_rewards

    def update(self, accuracy: float, angle: float) -> None:
        self.history.append({"accuracy": accuracy, "angle": angle})

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": "pool",
            "subset_size": self.subset_size,
            "n_prompts": self.n_prompts,
            "drawn": {str(k): v.tolist() for k, v in self._drawn.items()},
            "history": self.history,
            "rng": self._rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.subset_size = state["subset_size"]
        self.n_prompts = state["n_prompts"]
        self._drawn = {int(k): np.asarray(v, dtype=np.int64) for k, v in state["drawn"].items()}
        self.history = state["history"]
        self._rng.bit_generator.state = state["rng"]
