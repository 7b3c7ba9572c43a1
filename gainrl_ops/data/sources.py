"""Resolve what the user named ("embedded" or a file) into the dataset artifacts on disk."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import polars as pl

from gainrl_ops.core.fingerprint import fingerprint_json
from gainrl_ops.core.layout import Layout
from gainrl_ops.data.arithmetic import ArithmeticConfig, generate, write_jsonl
from gainrl_ops.data.datasets import (
    FieldMap,
    LoadedDataset,
    load_dataset,
    problem_id,
    write_dataset,
)

EMBEDDED = "embedded"


@dataclass(frozen=True)
class DatasetSource:
    """A dataset by path, or "embedded" for the problems that `generator` makes.

    name: the dataset's name in the storage root and in SQL.
    fields: which input fields hold the problem and the answer (None: auto-detect).
    on_error: "fail" on the first bad row, or "skip" it into the rejects table.
    """

    path: str = EMBEDDED
    name: str = "arithmetic"
    fields: FieldMap = FieldMap()
    on_error: str = "fail"
    generator: ArithmeticConfig = field(default_factory=ArithmeticConfig)

    def file(self, layout: Layout) -> Path:
        """The file to load; the embedded dataset is generated (deterministically) on first use."""
        if self.path != EMBEDDED:
            return Path(self.path).expanduser()
        target = layout.generated(self.name, fingerprint_json(asdict(self.generator)))
        if not target.exists():
            write_jsonl(generate(self.generator), target)
        return target


def prepare_dataset(source: DatasetSource, layout: Layout) -> tuple[LoadedDataset, dict[str, Path]]:
    """Load and normalise the dataset and write its prompts and rejects tables."""
    loaded = load_dataset(source.file(layout), fields=source.fields, on_error=source.on_error)  # type: ignore[arg-type]
    return loaded, write_dataset(loaded, layout.prompts(source.name), layout.rejects(source.name))


@dataclass(frozen=True)
class HeldOutConfig:
    """Held-out problems for evaluation; training prompts are always excluded.

    path: a dataset file, or "embedded" for arithmetic like the training set's, with its own seed.
    n_problems, seed: how many problems, and the generator seed (embedded only).
    max_new_tokens: greedy completion length when evaluating.
    """

    path: str = EMBEDDED
    n_problems: int = 200
    seed: int = 10_000
    max_new_tokens: int = 64


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


def held_out_for(source: DatasetSource, config: HeldOutConfig, layout: Layout) -> pl.DataFrame:
    """The held-out problems for a prepared training dataset: none of its prompts among them."""
    training_ids = pl.read_parquet(layout.prompts(source.name), columns=["id"])["id"].to_list()
    return held_out_problems(config.path, config.n_problems, config.seed, set(training_ids), source.generator)
