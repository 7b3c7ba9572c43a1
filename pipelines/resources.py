"""Resources: where artifacts live, which dataset and model, and how to score."""

import os
from dataclasses import fields
from pathlib import Path

import dagster as dg

from gainrl_ops.angles import DEFAULT_INTER_WEIGHT
from gainrl_ops.checkpoints import LocalCheckpointStore
from gainrl_ops.diagnostics import DiagnosticsConfig
from gainrl_ops.layout import Layout
from gainrl_ops.prompts import DEFAULT_SYSTEM_PROMPT, PromptConfig
from gainrl_ops.run_config import TrainingRunConfig, load_run_configs
from gainrl_ops.scorer import ScoreConfig
from gainrl_ops.sources import EMBEDDED
from gainrl_ops.storage import storage_root

RUNS_FILE = Path(os.environ.get("GAINRL_RUNS", Path(__file__).resolve().parent.parent / "data" / "training_runs.yaml"))


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
    settle_seconds: float = 10.0

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

    path: str = os.environ.get("GAINRL_DATA", EMBEDDED)
    name: str = os.environ.get("GAINRL_DATASET_NAME", "arithmetic")
    problem_field: str = ""
    answer_field: str = ""
    on_error: str = "fail"
    n_problems: int = 2000
    seed: int = 0
    max_steps: int = 3
    max_digits: int = 1


class ModelResource(dg.ConfigurableResource):
    """The base checkpoint and how prompts are rendered for it.

    base_model: a Hugging Face id, a local `save_pretrained` folder, or "embedded" for the
      tiny locally built Qwen2.
    dtype: "float32" or "bfloat16"; device: "auto", "cpu", "cuda", "cuda:1", ...
    system_prompt, max_tokens: the prompt template (the chat template is the tokenizer's).
    """

    base_model: str = os.environ.get("GAINRL_MODEL", EMBEDDED)
    dtype: str = "float32"
    device: str = "auto"
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    max_tokens: int = 1024

    @property
    def prompt(self) -> PromptConfig:
        return PromptConfig(system_prompt=self.system_prompt, max_tokens=self.max_tokens)


class ScoringResource(dg.ConfigurableResource):
    """How scores are computed.

    inter_weight: w in angle_score = c_intra + w * c_inter.
    shard_size: prompts per shard, i.e. per parallel scoring step.
    max_batch_size, max_batch_tokens: forward-pass batch limits (raise the tokens on a GPU).
    """

    inter_weight: float = DEFAULT_INTER_WEIGHT
    shard_size: int = 1024
    max_batch_size: int = 64
    max_batch_tokens: int = 4096

    @property
    def config(self) -> ScoreConfig:
        return ScoreConfig(self.inter_weight, self.max_batch_size, self.max_batch_tokens)


class TrainingResource(dg.ConfigurableResource):
    """Named GRPO runs: a YAML mapping of run name to `TrainingRunConfig` fields.

    runs_file: the file the `training_runs` partitions were loaded from.
    """

    runs_file: str = str(RUNS_FILE)

    def runs(self) -> dict[str, TrainingRunConfig]:
        return load_run_configs(Path(self.runs_file))


class HeldOutResource(dg.ConfigurableResource):
    """Held-out problems for evaluation; training prompts are always excluded.

    path: a dataset file, or "embedded" for generated arithmetic with its own seed.
    n_problems, seed: how many problems, and the generator seed (embedded only).
    max_new_tokens: greedy completion length.
    """

    path: str = os.environ.get("GAINRL_EVAL_DATA", EMBEDDED)
    n_problems: int = 200
    seed: int = 10_000
    max_new_tokens: int = 64


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
        return DiagnosticsConfig(**{f.name: getattr(self, f.name) for f in fields(DiagnosticsConfig)})
