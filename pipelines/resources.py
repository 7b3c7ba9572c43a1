"""Resources: where artifacts live, which dataset and model, how to score, train and diagnose.

Each resource takes its defaults from the library's config dataclass and builds it by
keyword, so a setting is declared once; `LIBRARY` names, per library config, the fields a
resource deliberately does not expose, and `_build` refuses any other missing one.
`TargetsResource.resolve(context)` turns a checkpoint partition into the library's
`CheckpointTarget`, the way the CLI and the benchmarks resolve a checkpoint too.

Environment overrides (GAINRL_HOME, GAINRL_DATA, GAINRL_DATASET_NAME, GAINRL_MODEL,
GAINRL_EVAL_DATA, GAINRL_RUNS) are read by the process that runs a step, when it runs,
wherever that process was started: an empty resource field means "the variable, else the
library default", and a field set in the run config wins over the variable.
"""


import os
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, ClassVar

import dagster as dg

from gainrl_ops.core.layout import Layout
from gainrl_ops.core.storage import storage_root
from gainrl_ops.data.arithmetic import ArithmeticConfig
from gainrl_ops.data.datasets import FieldMap
from gainrl_ops.data.prompts import SHARD_SIZE, PromptConfig, load_few_shot
from gainrl_ops.data.shards import ShardSet, current_shards
from gainrl_ops.data.sources import (
    EMBEDDED,
    DatasetSource,
    HeldOutConfig,
)
from gainrl_ops.data.versions import require_loaded
from gainrl_ops.diagnostics.config import DiagnosticsConfig
from gainrl_ops.scoring.checkpoints import CheckpointRecord, LocalCheckpointStore
from gainrl_ops.scoring.config import ScoreConfig
from gainrl_ops.scoring.hardware import AUTO
from gainrl_ops.scoring.target import CheckpointTarget
from gainrl_ops.training.config import TrainingRunConfig, load_run_configs
from gainrl_ops.training.resolve import resolve_model

DEFAULT_RUNS_FILE = Path(__file__).resolve().parent.parent / "data" / "training_runs.yaml"


def unexposed(cls: type, resource: type[dg.ConfigurableResource]) -> set[str]:
    """The fields of library config `cls` that `resource` neither has nor lists as internal in `LIBRARY`."""
    internal = getattr(resource, "LIBRARY", {}).get(cls, frozenset())
    return {f.name for f in fields(cls)} - set(resource.model_fields) - internal


def _build(cls: type, resource: dg.ConfigurableResource) -> Any:
    """The library config `cls`, built by keyword from the resource's same-named fields; a
    field that is neither exposed nor listed as internal is a bug, not a silent default."""
    if missing := unexposed(cls, type(resource)):
        raise TypeError(f"{type(resource).__name__} does not expose {cls.__name__} fields {sorted(missing)}; add them or list them in LIBRARY")
    return cls(**{f.name: getattr(resource, f.name) for f in fields(cls) if f.name in type(resource).model_fields})


def _from_env(value: str, variable: str, default: str) -> str:
    """`value` if set, else the environment variable of the process running the step, else `default`."""
    return value or os.environ.get(variable, default)


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

    # root is `directory`, resolved against the storage root.
    LIBRARY: ClassVar[dict[type, frozenset[str]]] = {LocalCheckpointStore: frozenset({"root"})}

    directory: str = ""
    settle_seconds: float = LocalCheckpointStore.settle_seconds

    def store(self, layout: Layout) -> LocalCheckpointStore:
        root = Path(self.directory).resolve() if self.directory else layout.checkpoints_dir
        return LocalCheckpointStore(root, self.settle_seconds)


class DatasetResource(dg.ConfigurableResource):
    """The training prompts.

    path: JSON, JSONL, Parquet, a saved Hugging Face dataset folder, or "embedded" for the
      generated arithmetic problems; empty means $GAINRL_DATA, else "embedded".
    name: the dataset's name in the storage root and in SQL; empty means $GAINRL_DATASET_NAME,
      else "arithmetic".
    problem_field, answer_field: source fields; empty means auto-detect.
    on_error: "fail" on the first bad row, or "skip" it into the rejects table.
    n_problems, seed, max_steps, max_digits: the generated dataset (embedded only).
    """

    # `fields` and `generator` are built from problem_field/answer_field and the ArithmeticConfig fields.
    LIBRARY: ClassVar[dict[type, frozenset[str]]] = {DatasetSource: frozenset({"fields", "generator"}), ArithmeticConfig: frozenset()}

    path: str = ""
    name: str = ""
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
            path=_from_env(self.path, "GAINRL_DATA", DatasetSource.path),
            name=_from_env(self.name, "GAINRL_DATASET_NAME", DatasetSource.name),
            fields=FieldMap(problem=self.problem_field or None, answer=self.answer_field or None),
            on_error=self.on_error,
            generator=_build(ArithmeticConfig, self),
        )


class ModelResource(dg.ConfigurableResource):
    """The base checkpoint and how prompts are rendered for it.

    base_model: a Hugging Face id, a local `save_pretrained` folder, or "embedded" for the
      tiny locally built Qwen2; empty means $GAINRL_MODEL, else "embedded".
    dtype: "auto" (bfloat16 where the hardware runs it natively, else float32), "float32",
      "bfloat16" or "float16"; device: "auto", "cpu", "cuda", "cuda:1", ...
    system_prompt, max_tokens: the prompt template (the chat template is the tokenizer's).
    few_shot_file: a JSON list of {"question", "answer"} objects rendered as user/assistant
      turns before each question (the file `gainrl score --few-shot` takes); empty for none.
      Its content, not its path, keys the shards: edit it and tokenized_shards makes a new set.
    """

    # few_shot is read from few_shot_file.
    LIBRARY: ClassVar[dict[type, frozenset[str]]] = {PromptConfig: frozenset({"few_shot"})}

    base_model: str = ""
    dtype: str = AUTO
    device: str = AUTO
    system_prompt: str = PromptConfig.system_prompt
    few_shot_file: str = ""
    max_tokens: int = PromptConfig.max_tokens

    @property
    def model_id(self) -> str:
        """What the user named: a Hub id, a path or "embedded"."""
        return _from_env(self.base_model, "GAINRL_MODEL", EMBEDDED)

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

    LIBRARY: ClassVar[dict[type, frozenset[str]]] = {ScoreConfig: frozenset()}

    inter_weight: float = ScoreConfig.inter_weight
    shard_size: int = SHARD_SIZE
    max_batch_size: int = ScoreConfig.max_batch_size
    max_batch_tokens: int = ScoreConfig.max_batch_tokens
    min_prefix_tokens: int = ScoreConfig.min_prefix_tokens

    @property
    def config(self) -> ScoreConfig:
        return _build(ScoreConfig, self)


class TrainingResource(dg.ConfigurableResource):
    """Named GRPO runs: a YAML mapping of run name to `TrainingRunConfig` fields.

    runs_file: empty means $GAINRL_RUNS, else `data/training_runs.yaml`. The `training_runs`
      partitions follow the names in this file (the `training_runs_sensor` adds new ones).
    """

    runs_file: str = ""

    @property
    def path(self) -> Path:
        return Path(_from_env(self.runs_file, "GAINRL_RUNS", str(DEFAULT_RUNS_FILE)))

    def runs(self) -> dict[str, TrainingRunConfig]:
        return load_run_configs(self.path)

    def run(self, name: str) -> TrainingRunConfig:
        runs = self.runs()
        if name not in runs:
            raise KeyError(f"training run {name!r} is not in {self.path}; runs there: {sorted(runs)}")
        return runs[name]


class HeldOutResource(dg.ConfigurableResource):
    """Held-out problems for evaluation; training prompts are always excluded.

    path: a dataset file, or "embedded" for generated arithmetic with its own seed; empty means
      $GAINRL_EVAL_DATA, else "embedded".
    n_problems, seed: how many problems, and the generator seed (embedded only).
    max_new_tokens: greedy completion length.
    """

    LIBRARY: ClassVar[dict[type, frozenset[str]]] = {HeldOutConfig: frozenset()}

    path: str = ""
    n_problems: int = HeldOutConfig.n_problems
    seed: int = HeldOutConfig.seed
    max_new_tokens: int = HeldOutConfig.max_new_tokens

    @property
    def config(self) -> HeldOutConfig:
        return replace(_build(HeldOutConfig, self), path=_from_env(self.path, "GAINRL_EVAL_DATA", HeldOutConfig.path))


class DiagnosticsResource(dg.ConfigurableResource):
    """Signal diagnostics: a seeded sample of prompts, their gradient norms and correlations.

    sample_size, seed: how many prompts and which (the seed also drives sampling and bootstrap).
    num_generations, temperature, max_completion_length: rollouts, as in training.
    generation_batch: prompts sampled per `generate` call.
    n_boot, level: bootstrap replicates and interval coverage.
    """

    LIBRARY: ClassVar[dict[type, frozenset[str]]] = {DiagnosticsConfig: frozenset()}

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

    def loaded_version(self) -> str:
        """The content version raw_dataset loaded last: what tokenized_shards and angle_scores work on."""
        return require_loaded(self.layout, self.dataset.source.name)

    def shards(self) -> ShardSet:
        """The loaded version's shard set tokenized_shards made last; it must match the model's prompt settings."""
        return current_shards(self.layout, self.dataset.source.name, self.loaded_version(), self.model.prompt)

    def base_model_path(self) -> str:
        """The base model's loadable id or path ("embedded" is built once and cached)."""
        return resolve_model(self.model.model_id, self.layout)

    def base(self) -> CheckpointRecord:
        """The base checkpoint, registered in the store (once)."""
        return self.store.register(self.base_model_path(), name="base", source=self.model.model_id)

    def target(self, record: CheckpointRecord, loaded: bool = False) -> CheckpointTarget:
        """`record` against the version the dataset's name serves, or with `loaded` the one it loaded last."""
        return CheckpointTarget.current(self.layout, self.dataset.source, record, self.model.prompt, self.model.dtype, self.model.device, loaded)

    def resolve(
        self, context: dg.AssetExecutionContext | dg.OpExecutionContext | dg.AssetCheckExecutionContext, loaded: bool = False
    ) -> CheckpointTarget:
        """The checkpoint partition being run (see `target`)."""
        return self.target(self.store.get(context.partition_key), loaded)


def default_resources(
    storage: StorageResource | None = None,
    checkpoint_store: CheckpointStoreResource | None = None,
    dataset: DatasetResource | None = None,
    model: ModelResource | None = None,
    **others: dg.ConfigurableResource,
) -> dict[str, dg.ConfigurableResource]:
    """Every resource the definitions use, with `targets` wired to the same storage, dataset,
    model and store. Unset ones are configurable at launch, with the library defaults and the
    environment overrides of the module docstring."""
    storage = storage or StorageResource.configure_at_launch()
    checkpoint_store = checkpoint_store or CheckpointStoreResource.configure_at_launch()
    dataset = dataset or DatasetResource.configure_at_launch()
    model = model or ModelResource.configure_at_launch()
    return {
        "storage": storage,
        "checkpoint_store": checkpoint_store,
        "dataset": dataset,
        "model": model,
        "targets": TargetsResource(storage=storage, dataset=dataset, model=model, checkpoint_store=checkpoint_store),
        "scoring": others.get("scoring", ScoringResource()),
        "training": others.get("training", TrainingResource()),
        "held_out": others.get("held_out", HeldOutResource()),
        "diagnostics": others.get("diagnostics", DiagnosticsResource()),
    }
