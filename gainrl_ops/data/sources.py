"""Resolve what the user named ("embedded" or a file) into the dataset artifacts on disk."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from gainrl_ops.core.fingerprint import fingerprint_json
from gainrl_ops.core.layout import Layout, safe_name
from gainrl_ops.core.storage import sweep_temporary
from gainrl_ops.data.arithmetic import EMBEDDED, ArithmeticConfig, generate, write_jsonl
from gainrl_ops.data.content import dataset_version
from gainrl_ops.data.datasets import (
    FieldMap,
    load_dataset,
    problem_id,
    write_dataset,
)
from gainrl_ops.data.prompts_file import encode_prompts
from gainrl_ops.data.versions import DatasetLabel, mark_loaded, settle

if TYPE_CHECKING:  # imported where used: loading the Dagster definitions should not pay for polars
    import polars as pl
    import pyarrow as pa


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

    def __post_init__(self) -> None:
        safe_name(self.name, "dataset name")

    def file(self, layout: Layout) -> Path:
        """The file to load; the embedded dataset is generated (deterministically) on first use."""
        if self.path != EMBEDDED:
            return Path(self.path).expanduser()
        target = layout.generated(self.name, fingerprint_json(asdict(self.generator)))
        if not target.exists():
            write_jsonl(generate(self.generator), target)
        return target


@dataclass(frozen=True)
class PreparedDataset:
    """A dataset version as `prepare_dataset` wrote it: its prompts file, and the rejects and
    counts of the load. `table` reads the prompts from the file on first use: a large regular
    file is streamed into it without its rows being kept in memory."""

    prompts: Path
    rejects: pa.Table
    n_read: int
    duplicates: int
    rows: int

    @cached_property
    def table(self) -> pa.Table:
        """The prompts (CANONICAL_SCHEMA), as stored."""
        import pyarrow.parquet as pq

        return pq.read_table(self.prompts)


def prepare_dataset(source: DatasetSource, layout: Layout) -> tuple[PreparedDataset, DatasetLabel]:
    """Load and normalise the dataset, write its prompts, rejects and provenance under its
    content version, then make it the name's loaded version (written last, so a reader never
    follows a label to a version that is not complete). The name serves it at once only if the
    version it serves has no published scores (`versions.settle`). A regular file's rows are
    not held: they stream from the input into the prompts file, kept encoded until written."""
    started = time.time()
    file = source.file(layout)
    loaded = load_dataset(file, fields=source.fields, on_error=source.on_error, keep_table=False)  # type: ignore[arg-type]
    # Prompts the loader did not encode on the way are encoded on a thread while their version is
    # hashed (both let go of the GIL).
    with ThreadPoolExecutor(1) as encoder:
        encoded = encoder.submit(encode_prompts, loaded.table) if loaded.encoded is None else None
        version = loaded.version or dataset_version(loaded.table)
        for folder in (layout.dataset_label(source.name).parent, layout.prompts(source.name, version).parent):
            sweep_temporary(folder, started)
        written = replace(loaded, encoded=encoded.result()) if encoded is not None else loaded  # not kept: the bytes go once written
        files = write_dataset(written, layout.prompts(source.name, version), layout.rejects(source.name, version))
    loaded_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    label = DatasetLabel(source.name, version, str(file), loaded.rows, loaded_at, loaded.n_read)
    mark_loaded(layout, label)
    settle(layout, source.name)
    return PreparedDataset(files["prompts"], loaded.rejects, loaded.n_read, loaded.duplicates, loaded.rows), label


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
    import polars as pl

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


def held_out_for(source: DatasetSource, version: str, config: HeldOutConfig, layout: Layout) -> pl.DataFrame:
    """The held-out problems for a prepared training dataset: none of its prompts among them."""
    import polars as pl

    training_ids = pl.read_parquet(layout.prompts(source.name, version), columns=["id"])["id"].to_list()
    return held_out_problems(config.path, config.n_problems, config.seed, set(training_ids), source.generator)
