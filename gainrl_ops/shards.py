"""Tokenized shards: the prompts of a dataset as token ids with their span boundaries.

A shard set lives in one folder keyed by the prompt fingerprint (tokenizer + chat
template + system prompt + few-shot + max length), so changing any of them makes a new
set instead of silently mixing ids from two tokenizers.
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

from .fingerprint import fingerprint_json
from .prompts import (
    PromptConfig,
    prompt_fingerprint,
    render_prompt,
    tokenizer_fingerprint,
)
from .storage import write_parquet_atomic, write_text_atomic

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
MANIFEST = "manifest.json"
_DIGEST_KEY = b"gainrl.shard_digest"


@dataclass(frozen=True)
class Shard:
    path: Path
    digest: str
    rows: int


@dataclass(frozen=True)
class ShardSet:
    """A complete set of shards; `manifest.json` is written last, so its presence means done."""

    directory: Path
    prompt_fingerprint: str
    tokenizer_fingerprint: str
    shards: tuple[Shard, ...]

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
            shards=tuple(Shard(Path(directory) / s["file"], s["digest"], s["rows"]) for s in manifest["shards"]),
        )


def _chunks(table: pa.Table, size: int) -> Iterator[pa.Table]:
    for start in range(0, table.num_rows, size):
        yield table.slice(start, size)


def tokenize_to_shards(
    prompts: pa.Table,
    tokenizer: PreTrainedTokenizerBase,
    config: PromptConfig,
    root: Path,
    shard_size: int = 1024,
) -> ShardSet:
    """Render and tokenize the `id`/`problem` rows of `prompts` into `root/<prompt fingerprint>/`.

    Finished sets are reused; shards already written by an interrupted run are kept.
    """
    key = prompt_fingerprint(tokenizer, config)
    directory = Path(root) / key
    if (directory / MANIFEST).exists():
        return ShardSet.open(directory)
    shards = []
    with tqdm(total=prompts.num_rows, desc="tokenizing", unit="prompt") as bar:
        for index, chunk in enumerate(_chunks(prompts.select(["id", "problem"]), shard_size)):
            ids = chunk.column("id").to_pylist()
            digest = fingerprint_json({"prompt": key, "ids": ids})
            path = directory / f"shard-{index:05d}.parquet"
            if not _has_digest(path, digest):
                _write_shard(ids, chunk.column("problem").to_pylist(), tokenizer, config, path, digest)
            shards.append(Shard(path, digest, len(ids)))
            bar.update(len(ids))
    shard_set = ShardSet(directory, key, tokenizer_fingerprint(tokenizer), tuple(shards))
    write_text_atomic(json.dumps({
        "prompt_fingerprint": key,
        "tokenizer_fingerprint": shard_set.tokenizer_fingerprint,
        "prompt_config": {"system_prompt": config.system_prompt, "few_shot": config.few_shot, "max_tokens": config.max_tokens},
        "chat_template": tokenizer.chat_template,
        "rows": shard_set.rows,
        "shards": [{"file": s.path.name, "digest": s.digest, "rows": s.rows} for s in shards],
    }, indent=2), directory / MANIFEST)
    return shard_set


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
