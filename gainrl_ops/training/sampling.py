"""Which prompts each epoch trains on: the `EpochSampler` protocol, GAIN-RL's Gaussian
curriculum and the uniform baseline (the reward-based samplers: `learnability.py`, `pools.py`).

All work on ranks of an ordering: position 0 is the prompt with the highest angle score
for GAIN-RL, or the first of a control order (shortest question for the `length` sampler,
easiest for `difficulty`: the same `GainRLSampler` over another order). Each epoch draws
`subset_size` ranks; after it, `observe` takes each prompt's mean group reward and `update`
the epoch's accuracy and feedback angle.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class GainRLConfig:
    """The published GAIN-RL controller, in rank units (defaults for ~7.5k prompts).

    Sampling: each epoch draws `subset_size` ranks without replacement with probability
    proportional to exp(-0.5 * ((rank - mu) / sigma)^2); epoch 0 uses mu = mu0.
    Update after an epoch with accuracy `acc` in [0, 1] and mean angle score `angle`:
        adjustment = n * tanh(alpha * (acc - beta)) + n * tanh(alpha * angle),
        clamped to [adj_min, adj_max];  mu <- mu + adjustment.

    `scale_free()` gives the same controller for another dataset size: n, sigma, adj_min,
    adj_max and mu0 as fractions of the dataset (subset_size stays a count).
    """

    n: float = 500.0
    alpha: float = 2.0
    beta: float = 0.5
    adj_min: float = 0.0
    adj_max: float = 1000.0
    sigma: float = 1000.0
    subset_size: int = 256
    mu0: float = 0.0

    @classmethod
    def scale_free(
        cls,
        n_prompts: int,
        *,
        n: float = 500 / 7500,
        sigma: float = 1000 / 7500,
        adj_min: float = 0.0,
        adj_max: float = 1000 / 7500,
        mu0: float = 0.0,
        alpha: float = 2.0,
        beta: float = 0.5,
        subset_size: int = 256,
    ) -> GainRLConfig:
        """A config whose rank-unit parameters are fractions of `n_prompts`."""
        return cls(
            n=n * n_prompts,
            alpha=alpha,
            beta=beta,
            adj_min=adj_min * n_prompts,
            adj_max=adj_max * n_prompts,
            sigma=sigma * n_prompts,
            subset_size=subset_size,
            mu0=mu0 * n_prompts,
        )


def mu_adjustment(config: GainRLConfig, accuracy: float, angle: float) -> float:
    """n * tanh(alpha * (acc - beta)) + n * tanh(alpha * angle), clamped to [adj_min, adj_max]."""
    raw = config.n * math.tanh(config.alpha * (accuracy - config.beta)) + config.n * math.tanh(config.alpha * angle)
    return min(max(raw, config.adj_min), config.adj_max)


def gaussian_weights(n_prompts: int, mu: float, sigma: float) -> np.ndarray:
    """Selection probabilities over ranks 0..n-1, proportional to exp(-0.5 ((rank - mu) / sigma)^2)."""
    ranks = np.arange(n_prompts, dtype=np.float64)
    logits = -0.5 * ((ranks - mu) / sigma) ** 2
    weights = np.exp(logits - logits.max())
    return weights / weights.sum()


class EpochSampler(Protocol):
    """What a trainer needs: the ranks of an epoch, feedback after it, and a resumable state.

    After an epoch the trainer calls `observe(ranks, mean_rewards)` with each trained prompt's
    mean group reward (the epoch's `rollouts` rows), then `update(accuracy, angle)`. The
    reward-based samplers keep no copy of what they observed in `state_dict()`: a resumed run
    loads the state and replays the rollout records of its finished epochs through `observe`.
    """

    @property
    def mu(self) -> float: ...

    @property
    def sigma(self) -> float: ...

    def select(self, epoch: int) -> np.ndarray: ...

    def observe(self, ranks: np.ndarray, mean_rewards: np.ndarray) -> None: ...

    def update(self, accuracy: float, angle: float) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class _Schedule:
    """Mutable schedule state: where the window is, which epochs were drawn, and the RNG."""

    mu: float
    epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


class GainRLSampler:
    """GAIN-RL's sampler and mu controller, with three corrections to the published code:

    - the epoch after an update samples around the *updated* mu (the published code used
      the previous epoch's mu, lagging one epoch);
    - mu stays within the list, [0, n_prompts - 1];
    - parameters can be given scale-free (`GainRLConfig.scale_free`).

    Draws come from one seeded numpy Generator whose state is part of `state_dict()`, so a
    resumed run continues the same schedule. `select(epoch)` for an epoch already drawn
    returns the same ranks (a dataloader may be iterated again).
    """

    def __init__(self, config: GainRLConfig, n_prompts: int, seed: int = 0):
        if config.subset_size > n_prompts:
            raise ValueError(f"subset_size {config.subset_size} exceeds the {n_prompts} ranked prompts")
        self.config = config
        self.n_prompts = n_prompts
        self._rng = np.random.default_rng(seed)
        self._state = _Schedule(mu=self._clamp(config.mu0))
        self._drawn: dict[int, np.ndarray] = {}

    @property
    def mu(self) -> float:
        return self._state.mu

    @property
    def sigma(self) -> float:
        return self.config.sigma

    def _clamp(self, mu: float) -> float:
        return min(max(mu, 0.0), float(self.n_prompts - 1))

    def select(self, epoch: int) -> np.ndarray:
        if epoch not in self._drawn:
            weights = gaussian_weights(self.n_prompts, self._state.mu, self.config.sigma)
            self._drawn = {epoch: self._rng.choice(self.n_prompts, size=self.config.subset_size, replace=False, p=weights)}
            self._state.epoch = epoch
        return self._drawn[epoch]

    def observe(self, ranks: np.ndarray, mean_rewards: np.ndarray) -> None:
        """Per-prompt rewards do not move the window (the controller takes the epoch's accuracy)."""

    def update(self, accuracy: float, angle: float) -> None:
        adjustment = mu_adjustment(self.config, accuracy, angle)
        before = self._state.mu
        self._state.mu = self._clamp(before + adjustment)
        self._state.history.append({"epoch": self._state.epoch, "accuracy": accuracy, "angle": angle, "mu_before": before, "adjustment": adjustment, "mu": self._state.mu})

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": "gainrl",
            "config": asdict(self.config),
            "n_prompts": self.n_prompts,
            "schedule": asdict(self._state),
            "drawn": {str(k): v.tolist() for k, v in self._drawn.items()},
            "rng": self._rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.config = GainRLConfig(**state["config"])
        self.n_prompts = state["n_prompts"]
        self._state = _Schedule(**state["schedule"])
        self._drawn = {int(k): np.asarray(v, dtype=np.int64) for k, v in state["drawn"].items()}
        self._rng.bit_generator.state = state["rng"]


class WindowlessSampler:
    """What the samplers without GAIN-RL's window share (uniform, learnability, pool): a seeded
    draw per epoch (`_draw`, from `self._rng`), the feedback kept as history, no mu or sigma.
    `select(epoch)` for the epoch already drawn returns the same ranks."""

    kind = ""

    def __init__(self, subset_size: int, n_prompts: int, seed: int = 0):
        self.subset_size = subset_size
        self.n_prompts = n_prompts
        self._rng = np.random.default_rng(seed)
        self._drawn: dict[int, np.ndarray] = {}
        self.history: list[dict[str, float]] = []

    @property
    def mu(self) -> float:
        """No window: no mu (nor sigma)."""
        return float("nan")

    @property
    def sigma(self) -> float:
        return float("nan")

    def _draw(self) -> np.ndarray:
        raise NotImplementedError

    def select(self, epoch: int) -> np.ndarray:
        if epoch not in self._drawn:
            self._drawn = {epoch: self._draw()}
        return self._drawn[epoch]

    def observe(self, ranks: np.ndarray, mean_rewards: np.ndarray) -> None:
        """Rewards are ignored unless a subclass uses them."""

    def update(self, accuracy: float, angle: float) -> None:
        self.history.append({"accuracy": accuracy, "angle": angle})

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
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


class RewardSampler(WindowlessSampler):
    """A windowless sampler moved by each prompt's latest mean group reward (`latest`, NaN for
    a prompt never trained on). The rewards are not in `state_dict()`: they are the run's
    rollout records, which a resumed run replays through `observe`."""

    def __init__(self, subset_size: int, n_prompts: int, seed: int = 0):
        super().__init__(subset_size, n_prompts, seed)
        self.latest = np.full(n_prompts, np.nan)

    def observe(self, ranks: np.ndarray, mean_rewards: np.ndarray) -> None:
        self.latest[np.asarray(ranks, dtype=np.int64)] = mean_rewards


class UniformSampler(WindowlessSampler):
    """The baseline: `subset_size` ranks uniformly at random each epoch; feedback is ignored."""

    kind = "uniform"

    def __init__(self, subset_size: int, n_prompts: int, seed: int = 0):
        if subset_size > n_prompts:
            raise ValueError(f"subset_size {subset_size} exceeds the {n_prompts} prompts")
        super().__init__(subset_size, n_prompts, seed)

    def _draw(self) -> np.ndarray:
        return self._rng.choice(self.n_prompts, size=self.subset_size, replace=False)
