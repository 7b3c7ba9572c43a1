"""Resolve what the user named ("embedded", a file, a model id) into artifacts on disk."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl

from .arithmetic import ArithmeticConfig, generate, write_jsonl
from .datasets import FieldMap, LoadedDataset, load_dataset, problem_id, write_dataset
from .embedded import EmbeddedModelConfig, embedded_model_path
from .fingerprint import fingerprint_json
from .layout import Layout

EMBEDDED = "embedded"


@dataclass(frozen=True)
class DatasetSource:
    """A dataset by path, or "embedded" for `n_problems` generated problems with `seed` and at
    most `max_steps` operations on operands of at most `max_digits` digits."""

    path: str = EMBEDDED
    name: str = "arithmetic"
    fields: FieldMap = FieldMap()
    on_error: str = "fail"
    n_problems: int = 2000
    seed: int = 0
    max_steps: int = 3
    max_digits: int = 1

    @property
    def generator(self) -> ArithmeticConfig:
        return ArithmeticConfig(n_problems=self.n_problems, seed=self.seed, max_steps=self.max_steps, max_digits=self.max_digits)

    def file(self, layout: Layout) -> Path:
        """The file to load; the embedded dataset is generated (deterministically) on first use."""
        if self.path != EMBEDDED:
            return Path(self.path).expanduser()
        generator = self.generator
        target = layout.dataset_dir(self.name) / f"generated-{fingerprint_json(asdict(generator))}.jsonl"
        if not target.exists():
            write_jsonl(generate(generator), target)
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


def held_out_problems(
    path: str, n_problems: int, seed: int, exclude: set[str], generator: ArithmeticConfig | None = None
) -> pl.DataFrame:
    """Held-out problems (id, problem, answer) for evaluation, none of whose ids is in `exclude`.

    "embedded" generates arithmetic problems like `generator` (the training set's) with
    their own seed; a path is loaded like a training dataset. At most `n_problems` rows.
    """
    if path == EMBEDDED:
        like = generator or ArithmeticConfig()
        problems = generate(ArithmeticConfig(n_problems=2 * n_problems, seed=seed, max_steps=like.max_steps, max_digits=like.max_digits))
        frame = pl.DataFrame({"id": [problem_id(p.problem) for p in problems], "problem": [p.problem for p in problems], "answer": [p.answer for p in problems]})
        frame = frame.unique("id", keep="first", maintain_order=True)
    else:
        frame = pl.from_arrow(load_dataset(Path(path)).table).select("id", "problem", "answer")
    held_out = frame.filter(~pl.col("id").is_in(list(exclude))).head(n_problems)
    if held_out.is_empty():
        raise ValueError(f"{path}: no held-out problem left after excluding the {len(exclude)} training ids")
    return held_out
