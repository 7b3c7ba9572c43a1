"""How scores are weighed and batched; torch-free, so the CLI and the Dagster resources can read
the defaults without importing torch."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_INTER_WEIGHT = 8.0


@dataclass(frozen=True)
class ScoreConfig:
    """How to batch and weigh.

    inter_weight: w in angle_score = c_intra + w * c_inter (the published code uses 8).
    max_batch_size: most prompts in one forward pass.
    max_batch_tokens: most padded tokens (batch x longest prompt) in one forward pass. On
        CPU, 1k-4k tokens run as fast as 16k with a quarter of the peak memory; on a GPU raise
        it to fill the device. With a shared prefix, only the tokens after it count.
    min_prefix_tokens: a shard whose prompts all start with at least this many identical
        tokens before any question runs them once and reuses their key/value cache; with
        fewer, every prompt is run whole. Set it above the longest prompt to always do that.
    """

    inter_weight: float = DEFAULT_INTER_WEIGHT
    max_batch_size: int = 64
    max_batch_tokens: int = 4096
    min_prefix_tokens: int = 16
