"""Named training runs: the configuration of each `training_run` partition."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

import yaml

from .angles import DEFAULT_INTER_WEIGHT
from .sampling import Curriculum, GainRLConfig, GaussianCurriculum, UniformCurriculum


@dataclass(frozen=True)
class TrainingRunConfig:
    """A named training run.

    Curriculum:
        sampler: "gainrl" (Gaussian window over the angle ranking, moved by feedback) or
            "uniform" (the baseline).
        subset_size: prompts per epoch.
        n_frac, sigma_frac, adj_max_frac: GAIN-RL's n, sigma and adj_max as fractions of
            the dataset size (published: 500, 1000, 1000 of ~7.5k prompts).
        alpha, beta: GAIN-RL's controller gains.
    GRPO:
        num_generations: completions per prompt; per_device_batch_size: completions per step.
        learning_rate, temperature, max_completion_length, kl_beta (TRL's `beta`).
    Run:
        epochs, seed, checkpoint_every (epochs; the last epoch is always saved),
        inter_weight: w of the angle score used for the epoch feedback.
    """

    name: str
    sampler: Literal["gainrl", "uniform"] = "gainrl"
    seed: int = 0
    epochs: int = 3
    subset_size: int = 32
    n_frac: float = 500 / 7500
    sigma_frac: float = 1000 / 7500
    adj_max_frac: float = 1000 / 7500
    alpha: float = 2.0
    beta: float = 0.5
    num_generations: int = 8
    per_device_batch_size: int = 32
    learning_rate: float = 5e-5
    temperature: float = 1.0
    max_completion_length: int = 48
    kl_beta: float = 0.0
    checkpoint_every: int = 1
    inter_weight: float = DEFAULT_INTER_WEIGHT

    def curriculum(self, n_prompts: int) -> Curriculum:
        if self.sampler == "uniform":
            return UniformCurriculum(self.subset_size, n_prompts, seed=self.seed)
        config = GainRLConfig.scale_free(
            n_prompts, n=self.n_frac, sigma=self.sigma_frac, adj_max=self.adj_max_frac,
            alpha=self.alpha, beta=self.beta, subset_size=self.subset_size,
        )
        return GaussianCurriculum(config, n_prompts, seed=self.seed)


def load_run_configs(path: Path) -> dict[str, TrainingRunConfig]:
    """Run configurations from a YAML mapping of run name to fields; unknown fields are errors."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    known = {f.name for f in fields(TrainingRunConfig)} - {"name"}
    runs = {}
    for name, values in raw.items():
        unknown = set(values or {}) - known
        if unknown:
            raise ValueError(f"{path}: run {name!r} has unknown fields {sorted(unknown)}; known: {sorted(known)}")
        runs[str(name)] = TrainingRunConfig(name=str(name), **(values or {}))
    return runs
