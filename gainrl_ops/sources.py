"""Resolve what the user named ("embedded", a file, a model id) into artifacts on disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .arithmetic import ArithmeticConfig, generate, write_jsonl
from .datasets import FieldMap, LoadedDataset, load_dataset, write_dataset
from .embedded import EmbeddedModelConfig, embedded_model_path
from .layout import Layout

EMBEDDED = "embedded"


@dataclass(frozen=True)
class DatasetSource:
    """A dataset by path, or "embedded" for `n_problems` generated problems with `seed`."""

    path: str = EMBEDDED
    name: str = "arithmetic"
    fields: FieldMap = FieldMap()
    on_error: str = "fail"
    n_problems: int = 2000
    seed: int = 0

    def file(self, layout: Layout) -> Path:
        """The file to load; the embedded dataset is generated (deterministically) on first use."""
        if self.path != EMBEDDED:
            return Path(self.path).expanduser()
        target = layout.dataset_dir(self.name) / f"generated-{self.n_problems}-{self.seed}.jsonl"
        if not target.exists():
            write_jsonl(generate(ArithmeticConfig(n_problems=self.n_problems, seed=self.seed)), target)
        return target


def prepare_dataset(source: DatasetSource, layout: Layout) -> tuple[LoadedDataset, dict[str, Path]]:
    """Load and normalise the dataset and write its prompts and rejects tables."""
    loaded = load_dataset(source.file(layout), fields=source.fields, on_error=source.on_error)  # type: ignore[arg-type]
    return loaded, write_dataset(loaded, layout.dataset_dir(source.name))


def resolve_model(name_or_path: str, layout: Layout, embedded: EmbeddedModelConfig | None = None) -> str:
    """A loadable model id or path; "embedded" builds (once, cached) the tiny default model."""
    if name_or_path == EMBEDDED:
        return str(embedded_model_path(embedded, root=layout.models_dir))
    return name_or_path
