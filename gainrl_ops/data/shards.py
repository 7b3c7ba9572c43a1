"""Tokenized shards: the prompts of a dataset as token ids with their span boundaries.

A shard set lives in one folder keyed by the prompt fingerprint (tokenizer + chat
template + system prompt + few-shot + max length), so changing any of them makes a new
set instead of silently mixing ids from two tokenizers. The dataset's `current.json` names
the set made last, so the pipeline finds it without loading a tokenizer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from gainrl_ops.core import layout as tree
from gainrl_ops.core.fingerprint import fingerprint_json
from gainrl_ops.core.layout import Layout
from gainrl_ops.core.storage import write_parquet_atomic, write_text_atomic
from gainrl_ops.data.prompts import (
    PromptConfig,
    prompt_fingerprint,
    render_prompt,
    tokenizer_fingerprint,
)

SHARD_SCHEMA = pa.schema([
    pa.field("id", pa.string(), nullable=False),
    pa.field("input_ids", pa.list_(pa.int32()), nullable=False),
    pa.field("system_start", pa.int32(), nullable=False),
    pa.field("system_end", pa.int32(), nullable=False),
    pa.field("question_start", pa.int32(), nullable=False),
    pa.field("question_end", pa.int32(), nullable=False),
    pa.field("n_tokens", pa.int32(), nullable=False),
    pa.field("truncated", pa.bool_(), nullable=False),
])
MANIFEST = tree.SHARD_MANIFEST.pattern.rsplit("/", 1)[-1]
_DIGEST_KEY = b"gainrl.shard_digest"


@dataclass(frozen=True)
class Shard:
    """One shard file; `index` is its position in the set (its part file has the same)."""

    path: Path
    digest: str
    rows: int
    index: int


@dataclass(frozen=True)
class ShardSet:
    """A complete set of shards; `manifest.json` is written last, so its presence means done."""

    directory: Path
    prompt_fingerprint: str
    tokenizer_fingerprint: str
    shards: tuple[Shard, ...]

    prompt_config: dict[str, object]

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.shards)

    @classmethod
    def open(cls, directory: Path) -> ShardSet:
        manifest = json.loads((Path(directory) / MANIFEST).read_text())
        return cls(
            directory=Path(directory),
            prompt_fingerprint=manifest["prompt_fingerprint"],
            tokenizer_fingerprint=manifest["tokenizer_fingerprint"],
            shards=tuple(Shard(Path(directory) / s["file"], s["digest"], s["rows"], i) for i, s in enumerate(manifest["shards"])),
            prompt_config=manifest["prompt_config"],
        )


def _prompt_config(config: PromptConfig) -> dict[str, object]:
    return json.loads(json.dumps({"system_prompt": config.system_prompt, "few_shot": config.few_shot, "max_tokens": config.max_tokens}))


def current_shards(layout: Layout, dataset: str, prompt: PromptConfig | None = None) -> ShardSet:
    """The shard set that was made last for `dataset`; with `prompt`, it must have been
    rendered with that prompt configuration."""
    pointer = layout.current_shards(dataset)
    if not pointer.exists():
        raise FileNotFoundError(f"{pointer}: dataset {dataset!r} has no tokenized shards; materialize tokenized_shards first")
    shards = ShardSet.open(layout.shards(dataset, json.loads(pointer.read_text())["prompt_fingerprint"]))
    if prompt is not None and shards.prompt_config != _prompt_config(prompt):
        raise ValueError(
            f"the shards of dataset {dataset!r} were rendered with {shards.prompt_config}, not {_prompt_config(prompt)}; "
            "materialize tokenized_shards again"
        )
    return shards


def _chunks(table: pa.Table, size: int) -> Iterator[pa.Table]:
    for start in range(0, table.num_rows, size):
        yield table.slice(start, size)


def tokenize_to_shards(
    prompts: pa.Table,
    tokenizer: PreTrainedTokenizerBase,
    config: PromptConfig,
    layout: Layout,
    dataset: str,
    shard_size: int = 1024,
) -> ShardSet:
    """Render and tokenize the `id`/`problem` rows of `prompts` into the dataset's shard set
    for this prompt fingerprint, and make it the dataset's current set.

    Finished sets are reused; shards already written by an interrupted run are kept.
    """
    key = prompt_fingerprint(tokenizer, config)
    directory = layout.shards(dataset, key)
    if not (directory / MANIFEST).exists():
        _tokenize(prompts, tokenizer, config, layout, dataset, key, shard_size)
    write_text_atomic(json.dumps({"prompt_fingerprint": key}), layout.current_shards(dataset))
    return ShardSet.open(directory)


def _tokenize(
    prompts: pa.Table, tokenizer: PreTrainedTokenizerBase, config: PromptConfig, layout: Layout, dataset: str, key: str, shard_size: int
) -> None:
    shards = []
    with tqdm(total=prompts.num_rows, desc="tokenizing", unit="prompt") as bar:
        for index, chunk in enumerate(_chunks(prompts.select(["id", "problem"]), shard_size)):
            ids = chunk.column("id").to_pylist()
            digest = fingerprint_json({"prompt": key, "ids": ids})
            path = layout.path(tree.SHARD, dataset=dataset, prompt_fingerprint=key, index=index)
            if not _has_digest(path, digest):
                _write_shard(ids, chunk.column("problem").to_pylist(), tokenizer, config, path, digest)
            shards.append(Shard(path, digest, len(ids), index))
            bar.update(len(ids))
    write_text_atomic(json.dumps({
        "prompt_fingerprint": key,
        "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
        "prompt_config": _prompt_config(config),
        "chat_template": tokenizer.chat_template,
        "rows": sum(s.rows for s in shards),
        "shards": [{"file": s.path.name, "digest": s.digest, "rows": s.rows} for s in shards],
    }, indent=2), layout.shards(dataset, key) / MANIFEST)


def _has_digest(path: Path, digest: str) -> bool:
    if not path.exists():
        return False
    meta = pq.read_schema(path).metadata or {}
    return meta.get(_DIGEST_KEY) == digest.encode()


def _write_shard(
    ids: list[str],
    problems: list[str],
    tokenizer: PreTrainedTokenizerBase,
    config: PromptConfig,
    path: Path,
    digest: str,
) -> None:
    rendered = [render_prompt(tokenizer, problem, config) for problem in problems]
    columns = {
        "id": ids,
        "input_ids": [r.input_ids for r in rendered],
        "system_start": [r.system_span[0] for r in rendered],
        "system_end": [r.system_span[1] for r in rendered],
        "question_start": [r.question_span[0] for r in rendered],
        "question_end": [r.question_span[1] for r in rendered],
        "n_tokens": [len(r.input_ids) for r in rendered],
        "truncated": [r.truncated for r in rendered],
    }
    table = pa.table(columns, schema=SHARD_SCHEMA.with_metadata({_DIGEST_KEY: digest.encode()}))
    write_parquet_atomic(table, path)
