"""Where each artifact lives under the storage root."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .storage import storage_root


@dataclass(frozen=True)
class Layout:
    """root/
    datasets/<dataset>/prompts.parquet, rejects.parquet, shards/<prompt fingerprint>/
    scores/<dataset>/<prompt fingerprint>/<checkpoint>/part-*.parquet
    diagnostics/<dataset>/<checkpoint>.parquet, .json, .png
    models/ (embedded builds), checkpoints/ (the checkpoint store)
    """

    root: Path

    @classmethod
    def default(cls) -> Layout:
        return cls(storage_root())

    def dataset_dir(self, dataset: str) -> Path:
        return self.root / "datasets" / dataset

    def shards_root(self, dataset: str) -> Path:
        return self.dataset_dir(dataset) / "shards"

    def scores_dir(self, dataset: str, prompt_fingerprint: str, checkpoint: str) -> Path:
        return self.root / "scores" / dataset / prompt_fingerprint / checkpoint

    def diagnostics_stem(self, dataset: str, checkpoint: str) -> Path:
        """Signal diagnostics of a checkpoint: `<stem>.parquet`, `.json` and `.png`."""
        return self.root / "diagnostics" / dataset / checkpoint

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / "checkpoints"
