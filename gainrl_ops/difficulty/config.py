"""How a checkpoint's pass rates are estimated; torch-free, so the Dagster config and the store
read the defaults without importing torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PassRateConfig:
    """What to sample and how.

    k: completions sampled per prompt; a pass rate is a multiple of 1 / k.
    temperature: sampling temperature (plain sampling: no top-k, no top-p).
    sample: prompts drawn from the dataset version (without replacement, seeded); None for all.
    seed: the draw of prompts and every completion's tokens.
    max_new_tokens: completion length limit; a completion cut there is scored as it stands.
    batch_size: completions decoded per `generate` call (k per prompt, so a multiple of k keeps
      a prompt's completions together).
    """

    k: int = 8
    temperature: float = 1.0
    sample: int | None = None
    seed: int = 0
    max_new_tokens: int = 64
    batch_size: int = 256

    def __post_init__(self) -> None:
        for name in ("k", "max_new_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"pass rates: {name} must be >= 1, got {getattr(self, name)}")
        if not self.temperature > 0:
            raise ValueError(f"pass rates: temperature must be > 0, got {self.temperature}")
        if self.sample is not None and self.sample < 1:
            raise ValueError(f"pass rates: sample must be >= 1 prompts or None for all, got {self.sample}")
