"""One checkpoint against the dataset version it is scored on: the one way the CLI, the
benchmarks and the Dagster assets resolve what to read and write for a checkpoint.

Torch-free: the model and tokenizer are loaded only when asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from gainrl_ops.core.keys import ScoresKey
from gainrl_ops.core.layout import Layout
from gainrl_ops.data.prompts import PromptConfig
from gainrl_ops.data.shards import ShardSet, current_shards
from gainrl_ops.data.sources import DatasetSource
from gainrl_ops.data.versions import require_loaded, require_served
from gainrl_ops.scoring.checkpoints import CheckpointRecord
from gainrl_ops.scoring.hardware import AUTO, resolve_dtype
from gainrl_ops.scoring.plan import ScoringPlan

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class CheckpointTarget:
    """A checkpoint (`record`) and the content `version` of `source` it is scored on.

    prompt: how prompts are rendered; the dataset's current shard set must have been made with it.
    requested_dtype, device: how the checkpoint runs ("auto" resolved on this machine by `dtype`).
    """

    layout: Layout
    source: DatasetSource
    version: str
    record: CheckpointRecord
    prompt: PromptConfig = field(default_factory=PromptConfig)
    requested_dtype: str = AUTO
    device: str = AUTO

    @classmethod
    def current(
        cls, layout: Layout, source: DatasetSource, record: CheckpointRecord, prompt: PromptConfig, requested_dtype: str = AUTO,
        device: str = AUTO, loaded: bool = False,
    ) -> CheckpointTarget:
        """The checkpoint against the version the dataset's name serves now, or with `loaded` the
        version it loaded last (what scoring works on; see `data/versions.py` for the rule)."""
        version = (require_loaded if loaded else require_served)(layout, source.name)
        return cls(layout, source, version, record, prompt, requested_dtype, device)

    @cached_property
    def shards(self) -> ShardSet:
        """The version's current shard set (read on first use: evaluation does not need one)."""
        return current_shards(self.layout, self.dataset, self.version, self.prompt)

    @cached_property
    def dtype(self) -> str:
        """The dtype the checkpoint runs in, "auto" resolved on this machine (what score rows record)."""
        return resolve_dtype(self.requested_dtype, self.device)

    @property
    def dataset(self) -> str:
        return self.source.name

    @property
    def checkpoint(self) -> str:
        return self.record.fingerprint

    @property
    def key(self) -> ScoresKey:
        return ScoresKey(self.dataset, self.version, self.shards.prompt_fingerprint, self.checkpoint)

    def plan(self) -> ScoringPlan:
        """This checkpoint's scoring run over the current shard set, pinned (see `ScoringPlan`)."""
        return ScoringPlan(self.layout.root, self.key, self.shards, self.record.name, self.record.path, self.dtype)

    @property
    def prompts(self) -> Path:
        return self.layout.prompts(self.dataset, self.version)

    @property
    def scores(self) -> Path:
        return self.layout.scores(self.key)

    @property
    def ranked_scores(self) -> Path:
        return self.layout.ranked_scores(self.key)

    @property
    def ranking(self) -> Path:
        return self.layout.ranking(self.key)

    @property
    def report_dir(self) -> Path:
        return self.layout.report_dir(self.key)

    @property
    def evaluation(self) -> Path:
        return self.layout.evaluation(self.dataset, self.version, self.checkpoint)

    @property
    def diagnostics_stem(self) -> Path:
        return self.layout.diagnostics_stem(self.dataset, self.version, self.checkpoint)

    def load_model(self) -> PreTrainedModel:
        """The checkpoint on the configured device and dtype (torch is imported only here)."""
        from gainrl_ops.scoring.models import ModelSpec, load_model

        return load_model(ModelSpec(self.record.path, dtype=self.dtype, device=self.device))

    def load_tokenizer(self, check_shards: bool = False) -> PreTrainedTokenizerBase:
        """The checkpoint's tokenizer; with `check_shards`, it must be the one the shards used."""
        from gainrl_ops.data.prompts import tokenizer_fingerprint
        from gainrl_ops.scoring.models import load_tokenizer

        tokenizer = load_tokenizer(self.record.path)
        if check_shards and tokenizer_fingerprint(tokenizer) != self.shards.tokenizer_fingerprint:
            raise ValueError(
                f"checkpoint {self.record.name} ({self.checkpoint}) has another tokenizer than the shards in {self.shards.directory}; "
                "materialize tokenized_shards with it as the base model"
            )
        return tokenizer
