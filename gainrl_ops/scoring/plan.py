"""One scoring run, resolved once: which scores it writes and from which shards.

A `ScoringPlan` pins the key (dataset, content version, prompt fingerprint, checkpoint), the
shard files with their digests, and the context every score row records. Every step of a run
(sweep, each shard, publish) works from the same plan, so a dataset re-materialized while a run
is in flight cannot make its steps read different versions. Torch-free: the Dagster plan and
publish steps use it without loading a model library.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gainrl_ops.core.keys import ScoresKey
from gainrl_ops.core.layout import Layout
from gainrl_ops.data.shards import Shard, ShardSet, shard_problem
from gainrl_ops.scoring import publish
from gainrl_ops.scoring.publish import ScoreContext, ScoreSummary


@dataclass(frozen=True)
class ScoringPlan:
    """A checkpoint's scoring run: `key` names its scores, `shards` are the files it scores
    (paths and digests, as planned), `model` is the checkpoint's name in score rows,
    `checkpoint_path` what `from_pretrained` loads, and `dtype` the precision it runs in."""

    root: Path
    key: ScoresKey
    shards: ShardSet
    model: str
    checkpoint_path: str
    dtype: str

    def __post_init__(self) -> None:
        if self.shards.prompt_fingerprint != self.key.prompt_fingerprint:
            raise ValueError(f"{self.shards.directory}: shards of prompts {self.shards.prompt_fingerprint}, not {self.key.prompt_fingerprint}")

    @property
    def layout(self) -> Layout:
        return Layout(self.root)

    @property
    def context(self) -> ScoreContext:
        """What every score row of this run records (the one place a `ScoreContext` is made)."""
        return ScoreContext(
            self.key.dataset, self.key.version, self.key.checkpoint, self.model, self.shards.tokenizer_fingerprint, self.key.prompt_fingerprint, self.dtype,
        )

    @property
    def final(self) -> Path:
        """The published scores folder."""
        return self.layout.scores(self.key)

    @property
    def staging(self) -> Path:
        return self.layout.scores_staging(self.key)

    @property
    def ranked_scores(self) -> Path:
        return self.layout.ranked_scores(self.key)

    def shard(self, index: int) -> Shard:
        """The planned shard at `index`; its file must still be the one planned (a one-line error otherwise)."""
        shard = self.shards.shards[index]
        if problem := shard_problem(shard):
            raise ValueError(f"{shard.path}: changed since this run was planned ({problem}); materialize tokenized_shards, then score again")
        return shard

    def sweep(self) -> None:
        """Remove what interrupted runs left, before this run writes."""
        publish.sweep_staging(self.final, self.staging)

    def publish(self, written: int) -> ScoreSummary:
        """Publish the staging folder once every planned shard has its part from this run's context."""
        return publish.publish(self.staging, self.final, self.shards, self.context, written)
