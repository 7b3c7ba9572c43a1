"""The key that names one checkpoint's artifacts of one dataset version: a value, not four strings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class ScoresKey:
    """What names a checkpoint's scores, ranking and report: the dataset, its content version,
    the prompt fingerprint of the shards that were scored, and the checkpoint's fingerprint."""

    dataset: str
    version: str
    prompt_fingerprint: str
    checkpoint: str

    def values(self) -> dict[str, str]:
        """The key as the `Layout` templates' field values."""
        return asdict(self)

    def with_checkpoint(self, checkpoint: str) -> ScoresKey:
        """The same dataset version and prompts under another checkpoint."""
        return replace(self, checkpoint=checkpoint)
