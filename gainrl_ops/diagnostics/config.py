"""What a signal diagnostic measures; torch-free, so the Dagster resources read the defaults
without importing torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DiagnosticsConfig:
    """What to measure and how.

    Sample:
        sample_size: prompts drawn from the scored dataset (all of them if it has fewer).
        seed: the draw, the sampled completions and the bootstrap.
    Rollouts (the training defaults of `TrainingRunConfig`):
        num_generations: completions per prompt (GRPO's group).
        temperature, max_completion_length: sampling, as in training.
        generation_batch: prompts whose completions are sampled in one `generate` call.
    Statistics:
        n_boot: bootstrap replicates per interval; level: interval coverage.
    """

    sample_size: int = 512
    seed: int = 0
    num_generations: int = 8
    temperature: float = 1.0
    max_completion_length: int = 48
    generation_batch: int = 16
    n_boot: int = 1000
    level: float = 0.95
