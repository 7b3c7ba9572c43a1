"""Resources: where artifacts live, which dataset and model, how to score, train and diagnose.

Each resource takes its defaults from the library's config dataclass and builds it by
keyword, so a setting is declared once. `TargetsResource.resolve(context)` turns a
checkpoint partition into one `CheckpointTarget`: the record, the shard set, every path and
a lazy model loader.
"""


import os
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import dagster as dg

from gainrl_ops.core.layout import Layout
from gainrl_ops.core.storage import storage_root
from gainrl_ops.curriculum.ranking import existing_ranking
from gainrl_ops.data.arithmetic import ArithmeticConfig
from gainrl_ops.data.datasets import FieldMap
from gainrl_ops.data.prompts import PromptConfig, load_few_shot
from gainrl_ops.data.shards import ShardSet, current_shards
from gainrl_ops.data.sources import (
    EMBEDDED,
    DatasetSource,
    HeldOutConfig,
)
from gainrl_ops.data.versions import current_label, loaded_version
from gainrl_ops.diagnostics.config import DiagnosticsConfig
from gainrl_ops.scoring.checkpoints import CheckpointRecord, LocalCheckpointStore
from gainrl_ops.scoring.config import ScoreConfig
from gainrl_ops.scoring.hardware import AUTO, resolve_dtype
from gainrl_ops.training.config import TrainingRunConfig, load_run_configs

DEFAULT_RUNS_FILE = Path(__file__).resolve().parent.parent / "data" / "training_runs.yaml"


def _build(cls: type, resource: dg.ConfigurableResource) -> Any:
    """The library config `cls`, built by keyword from the resource's same-named fields."""
    return cls(**{f.name: getattr(resource, f.name) for f in fields(cls) if f.name in type(resource).model_fields})


class StorageResource(dg.ConfigurableResource):
    """The storage root; empty means $GAINRL_HOME, else `data/.gainrl` in the checkout."""

    root: str = ""

    @property
    def layout(self) -> Layout:
        return Layout(Path(self.root).resolve() if self.root else storage_root())


class CheckpointStoreResource(dg.ConfigurableResource):
    """The checkpoint store the rescoring sensor watches (a local folder for now).

    directory: empty means `<storage root>/checkpoints`.
    settle_seconds: a hand-copied checkpoint must be unchanged this long before it is taken.
    """

    directory: str = ""
    settle_seconds: float = LocalCheckpointStore.settle_seconds

    def store(self, layout: Layout) -> LocalCheckpointStore:
        root = Path(self.directory).resolve() if self.directory else layout.checkpoints_dir
        return LocalCheckpointStore(root, self.settle_seconds)


class DatasetResource(dg.ConfigurableResource):
    """The training prompts.

    path: JSON, JSONL, Parquet, a saved Hugging Face dataset folder, or "embedded" for the
      generated arithmetic problems.
    name: the dataset's name in the storage root and in SQL.
    problem_field, answer_field: source fields; empty means auto-detect.
    on_error: "fail" on the first bad row, or "skip" it into the rejects table.
    n_problems, seed, max_steps, max_digits: the generated dataset (embedded only).
    """

    path: str = DatasetSource.path
    name: str = DatasetSource.name
    problem_field: str = ""
    answer_field: str = ""
    on_error: str = DatasetSource.on_error
    n_problems: int = ArithmeticConfig.n_problems
    seed: int = ArithmeticConfig.seed
    max_steps: int = ArithmeticConfig.max_steps
    max_digits: int = ArithmeticConfig.max_digits

    @property
    def source(self) -> DatasetSource:
        return DatasetSource(
            path=self.path,
            name=self.name,
            fields=FieldMap(problem=self.problem_field or None, answer=self.answer_field or None),
            on_error=self.on_error,
            generator=_build(ArithmeticConfig, self),
        )


class ModelResource(dg.ConfigurableResource):
    """The base checkpoint and how prompts are rendered for it.

    base_model: a Hugging Face id, a local `save_pretrained` folder, or "embedded" for the
      tiny locally built Qwen2.
    dtype: "auto" (bfloat16 where the hardware runs it natively, else float32), "float32",
      "bfloat16" or "float16"; device: "auto", "cpu", "cuda", "cuda:1", ...
    system_prompt, max_tokens: the prompt template (the chat template is the tokenizer's).
    few_shot_file: a JSON list of {"question", "answer"} objects rendered as user/assistant
      turns before each question (the file `gainrl score --few-shot` takes); empty for none.
      Its content, not its path, keys the shards: edit it and tokenized_shards makes a new set.
    """

    base_model: str = EMBEDDED
    dtype: str = AUTO
    device: str = AUTO
    system_prompt: str = PromptConfig.system_prompt
    few_shot_file: str = ""
    max_tokens: int = PromptConfig.max_tokens

    @property
    def prompt(self) -> PromptConfig:
        few_shot = load_few_shot(self.few_shot_file) if self.few_shot_file else ()
        return replace(_build(PromptConfig, self), few_shot=few_shot)


class ScoringResource(dg.ConfigurableResource):
    """How scores are computed.

    inter_weight: w in angle_score = c_intra + w * c_inter.
    shard_size: prompts per shard, i.e. per parallel scoring step.
    max_batch_size, max_batch_tokens: forward-pass batch limits (raise the tokens on a GPU).
    min_prefix_tokens: leading tokens all prompts of a shard must share for them to be run
      once per shard (the `scoring_mode` metadata of angle_scores says what was done).
    """

    inter_weight: float = ScoreConfig.inter_weight
    shard_size: int = 1024
    max_batch_size: int = ScoreConfig.max_batch_size
    max_batch_tokens: int = ScoreConfig.max_batch_tokens
    min_prefix_tokens: int = ScoreConfig.min_prefix_tokens

    @property
    def config(self) -> ScoreConfig:
        return _build(ScoreConfig, self)


class TrainingResource(dg.ConfigurableResource):
    """Named GRPO runs: a YAML mapping of run name to `TrainingRunConfig` fields.

    runs_file: empty means `data/training_runs.yaml`. The `training_runs` partitions follow
      the names in this file (the `training_runs_sensor` adds new ones).
    """

    runs_file: str = ""

    def runs(self) -> dict[str, TrainingRunConfig]:
        return load_run_configs(Path(self.runs_file) if self.runs_file else DEFAULT_RUNS_FILE)

    def run(self, name: str) -> TrainingRunConfig:
        runs = self.runs()
        if name not in runs:
            raise KeyError(f"training run {name!r} is not in {self.runs_file or DEFAULT_RUNS_FILE}; runs there: {sorted(runs)}")
        return runs[name]


class HeldOutResource(dg.ConfigurableResource):
    """Held-out problems for evaluation; training prompts are always excluded.

    path: a dataset file, or "embedded" for generated arithmetic with its own seed.
    n_problems, seed: how many problems, and the generator seed (embedded only).
    max_new_tokens: greedy completion length.
    """

    path: str = HeldOutConfig.path
    n_problems: int = HeldOutConfig.n_problems
    seed: int = HeldOutConfig.seed
    max_new_tokens: int = HeldOutConfig.max_new_tokens

    @property
    def config(self) -> HeldOutConfig:
        return _build(HeldOutConfig, self)


class DiagnosticsResource(dg.ConfigurableResource):
    """Signal diagnostics: a seeded sample of prompts, their gradient norms and correlations.

    sample_size, seed: how many prompts and which (the seed also drives sampling and bootstrap).
    num_generations, temperature, max_completion_length: rollouts, as in training.
    generation_batch: prompts sampled per `generate` call.
    n_boot, level: bootstrap replicates and interval coverage.
    """

    sample_size: int = DiagnosticsConfig.sample_size
    seed: int = DiagnosticsConfig.seed
    num_generations: int = DiagnosticsConfig.num_generations
    temperature: float = DiagnosticsConfig.temperature
    max_completion_length: int = DiagnosticsConfig.max_completion_length
    generation_batch: int = DiagnosticsConfig.generation_batch
    n_boot: int = DiagnosticsConfig.n_boot
    level: float = DiagnosticsConfig.level

    @property
    def config(self) -> DiagnosticsConfig:
        return _build(DiagnosticsConfig, self)


@dataclass(frozen=True)
class CheckpointTarget:
    """One checkpoint of the store with everything an asset needs to read or write for it."""

    layout: Layout
    source: DatasetSource
    version: str
    record: CheckpointRecord
    model: ModelResource
    shard_set: Callable[[], ShardSet]

    @cached_property
    def shards(self) -> ShardSet:
        """The dataset's current shard set (read on first use: evaluation does not need one)."""
        return self.shard_set()

    @cached_property
    def dtype(self) -> str:
        """The dtype the checkpoint runs in, "auto" resolved on this machine (what score rows record)."""
        return resolve_dtype(self.model.dtype, self.model.device)

    @property
    def dataset(self) -> str:
        return self.source.name

    @property
    def checkpoint(self) -> str:
        return self.record.fingerprint

    @property
    def prompts(self) -> Path:
        return self.layout.prompts(self.dataset, self.version)

    @property
    def scores(self) -> Path:
        return self.layout.scores(self.dataset, self.version, self.shards.prompt_fingerprint, self.checkpoint)

    @property
    def ranked_scores(self) -> Path:
        return self.layout.ranked_scores(self.dataset, self.version, self.shards.prompt_fingerprint, self.checkpoint)

    @property
    def staging(self) -> Path:
        return self.layout.scores_staging(self.dataset, self.version, self.shards.prompt_fingerprint, self.checkpoint)

    @property
    def ranking(self) -> Path:
        return self.layout.ranking(self.dataset, self.version, self.shards.prompt_fingerprint, self.checkpoint)

    def existing_ranking(self) -> Path:
        return existing_ranking(self.layout, self.dataset, self.version, self.shards.prompt_fingerprint, self.checkpoint)

    @property
    def report_dir(self) -> Path:
        return self.layout.report_dir(self.dataset, self.version, self.shards.prompt_fingerprint, self.checkpoint)

    @property
    def evaluation(self) -> Path:
        return self.layout.evaluation(self.dataset, self.version, self.checkpoint)

    @property
    def diagnostics_stem(self) -> Path:
        return self.layout.diagnostics_stem(self.dataset, self.version, self.checkpoint)

    def score_context(self):  # -> ScoreContext
        from gainrl_ops.scoring.scorer import ScoreContext

        return ScoreContext(
            self.dataset, self.version, self.checkpoint, self.record.name, self.shards.tokenizer_fingerprint, self.shards.prompt_fingerprint, self.dtype
        )

    def load_model(self):  # -> PreTrainedModel
        """The checkpoint on the configured device and dtype (torch is imported only here)."""
        from gainrl_ops.scoring.models import ModelSpec, load_model

        return load_model(ModelSpec(self.record.path, dtype=self.dtype, device=self.model.device))

    def load_tokenizer(self, check_shards: bool = False):  # -> PreTrainedTokenizerBase
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


class TargetsResource(dg.ConfigurableResource):
    """Resolves a partition of the `checkpoints` partitions into a `CheckpointTarget`."""

    storage: dg.ResourceDependency[StorageResource]
    dataset: dg.ResourceDependency[DatasetResource]
    model: dg.ResourceDependency[ModelResource]
    checkpoint_store: dg.ResourceDependency[CheckpointStoreResource]

    @property
    def layout(self) -> Layout:
        return self.storage.layout

    @property
    def store(self) -> LocalCheckpointStore:
        return self.checkpoint_store.store(self.layout)

    def served_version(self) -> str:
        """The content version the dataset's name serves: what SQL, training and exports read."""
        return current_label(self.layout, self.dataset.name).version

    def loaded_version(self) -> str:
        """The content version raw_dataset loaded last: what tokenized_shards and angle_scores work on."""
        version = loaded_version(self.layout, self.dataset.name)
        if version is None:
            raise FileNotFoundError(f"{self.layout.loaded_label(self.dataset.name)}: dataset {self.dataset.name!r} was never loaded; materialize raw_dataset first")
        return version

    def shards(self, version: str | None = None) -> ShardSet:
        """The shard set tokenized_shards made last (of the loaded version unless `version` is
        given); it must match the model's prompt settings."""
        return current_shards(self.layout, self.dataset.name, version or self.loaded_version(), self.model.prompt)

    def base_model_path(self) -> str:
        """The base model's loadable id or path ("embedded" is built once and cached)."""
        from gainrl_ops.scoring.embedded import resolve_model

        return resolve_model(self.model.base_model, self.layout)

    def base(self) -> CheckpointRecord:
        """The base checkpoint, registered in the store (once)."""
        return self.store.register(self.base_model_path(), name="base", source=self.model.base_model)

    def target(self, record: CheckpointRecord, loaded: bool = False) -> CheckpointTarget:
        """The checkpoint over the served version, or with `loaded` the loaded one (to score it)."""
        version = self.loaded_version() if loaded else self.served_version()
        return CheckpointTarget(self.layout, self.dataset.source, version, record, self.model, lambda: self.shards(version))

    def resolve(
        self, context: dg.AssetExecutionContext | dg.OpExecutionContext | dg.AssetCheckExecutionContext, loaded: bool = False
    ) -> CheckpointTarget:
        """The checkpoint partition being run (see `target`)."""
        return self.target(self.store.get(context.partition_key), loaded)


def _env(name: str, default: str) -> str:
    """An environment override resolved when a run launches (`dg.EnvVar`), when it is set."""
    return dg.EnvVar(name) if name in os.environ else default


def default_resources(
    storage: StorageResource | None = None,
    checkpoint_store: CheckpointStoreResource | None = None,
    dataset: DatasetResource | None = None,
    model: ModelResource | None = None,
    **others: dg.ConfigurableResource,
) -> dict[str, dg.ConfigurableResource]:
    """Every resource the definitions use, with `targets` wired to the same storage, dataset,
    model and store. Unset ones are configurable at launch with the library defaults, and
    with GAINRL_DATA, GAINRL_DATASET_NAME, GAINRL_MODEL, GAINRL_EVAL_DATA when those are set."""
    storage = storage or StorageResource.configure_at_launch()
    checkpoint_store = checkpoint_store or CheckpointStoreResource.configure_at_launch()
    dataset = dataset or DatasetResource.configure_at_launch(
        path=_env("GAINRL_DATA", DatasetSource.path), name=_env("GAINRL_DATASET_NAME", DatasetSource.name)
    )
    model = model or ModelResource.configure_at_launch(base_model=_env("GAINRL_MODEL", EMBEDDED))
    return {
        "storage": storage,
        "checkpoint_store": checkpoint_store,
        "dataset": dataset,
        "model": model,
        "targets": TargetsResource(storage=storage, dataset=dataset, model=model, checkpoint_store=checkpoint_store),
        "scoring": others.get("scoring", ScoringResource()),
        "training": others.get("training", TrainingResource(runs_file=_env("GAINRL_RUNS", ""))),
        "held_out": others.get("held_out", HeldOutResource(path=_env("GAINRL_EVAL_DATA", HeldOutConfig.path))),
        "diagnostics": others.get("diagnostics", DiagnosticsResource()),
    }
