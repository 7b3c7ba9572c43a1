"""Tokenized shards: the prompts of a dataset as token ids with their span boundaries.

A shard set lives in one folder keyed by the prompt fingerprint (tokenizer + chat
template + system prompt + few-shot + max length), so changing any of them makes a new
set instead of silently mixing ids from two tokenizers. The dataset's `current.json` names
the set made last, so the pipeline finds it without loading a tokenizer.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from gainrl_ops.core import columns
from gainrl_ops.core import layout as tree
from gainrl_ops.core.collector import collector_off
from gainrl_ops.core.columns import arrow_schema
from gainrl_ops.core.fingerprint import fingerprint_json
from gainrl_ops.core.layout import Layout
from gainrl_ops.core.progress import bar as progress_bar
from gainrl_ops.core.storage import (
    sweep_temporary,
    write_parquet_atomic,
    write_text_atomic,
)
from gainrl_ops.data.prompts import (
    SHARD_SIZE,
    PromptConfig,
    prompt_fingerprint,
    render_prompts,
    tokenizer_fingerprint,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

SHARD_SCHEMA = arrow_schema(columns.SHARD)
log = logging.getLogger(__name__)
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


def current_shards(layout: Layout, dataset: str, version: str, prompt: PromptConfig | None = None) -> ShardSet:
    """The shard set that was made last for this version of `dataset`; with `prompt`, it must
    have been rendered with that prompt configuration."""
    pointer = layout.current_shards(dataset, version)
    if not pointer.exists():
        raise FileNotFoundError(f"{pointer}: dataset {dataset!r} (version {version}) has no tokenized shards; materialize tokenized_shards first")
    shards = ShardSet.open(layout.shards(dataset, version, json.loads(pointer.read_text())["prompt_fingerprint"]))
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
    version: str,
    shard_size: int = SHARD_SIZE,
) -> ShardSet:
    """Render and tokenize the `id`/`problem` rows of `prompts` (the content `version` of
    `dataset`) into its shard set for this prompt fingerprint, and make it the current set.

    A finished set is reused once every shard verifies against the manifest (readable, same
    rows, same digest); a shard that does not is rebuilt, and so is one left by an
    interrupted run that does not verify.
    """
    key = prompt_fingerprint(tokenizer, config)
    directory = layout.shards(dataset, version, key)
    if _set_problems(directory):
        sweep_temporary(directory, time.time())
        with collector_off():  # millions of token lists, no cycles: see core/collector.py
            _tokenize(prompts, tokenizer, config, layout.path(tree.SHARD_MANIFEST, dataset=dataset, version=version, prompt_fingerprint=key), key, shard_size)
    write_text_atomic(json.dumps({"prompt_fingerprint": key}), layout.current_shards(dataset, version))
    return ShardSet.open(directory)


def shard_problem(shard: Shard) -> str | None:
    """Why `shard` cannot be trusted (missing, unreadable, other rows or digest), or None."""
    if not shard.path.exists():
        return "missing"
    try:
        meta = pq.read_metadata(shard.path)
    except (pa.ArrowException, OSError) as error:
        return f"unreadable ({error})"
    if meta.num_rows != shard.rows:
        return f"{meta.num_rows} rows where the manifest says {shard.rows}"
    if (meta.metadata or {}).get(_DIGEST_KEY) != shard.digest.encode():
        return "its digest differs from the manifest's"
    return None


def _set_problems(directory: Path) -> list[str]:
    """What is wrong with the shard set in `directory` (nothing when it can be reused)."""
    if not (directory / MANIFEST).exists():
        return ["no manifest"]
    try:
        shards = ShardSet.open(directory)
    except (ValueError, KeyError, TypeError) as error:
        return [f"{directory / MANIFEST}: unreadable manifest ({error})"]
    problems = [f"{s.path}: {problem}" for s in shards.shards if (problem := shard_problem(s))]
    for problem in problems:
        log.warning("rebuilding a shard: %s", problem)
    return problems


def _tokenize(prompts: pa.Table, tokenizer: PreTrainedTokenizerBase, config: PromptConfig, manifest: Path, key: str, shard_size: int) -> None:
    shards = []
    with progress_bar(prompts.num_rows, "tokenizing", unit="prompt") as bar:
        for index, chunk in enumerate(_chunks(prompts.select(["id", "problem"]), shard_size)):
            ids = chunk.column("id").to_pylist()
            shard = Shard(manifest.parent / tree.SHARD.name(index=index), fingerprint_json({"prompt": key, "ids": ids}), len(ids), index)
            if shard_problem(shard):
                _write_shard(ids, chunk.column("problem").to_pylist(), tokenizer, config, shard.path, shard.digest)
            shards.append(shard)
            bar.update(len(ids))
    write_text_atomic(json.dumps({
        "prompt_fingerprint": key,
        "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
        "prompt_config": _prompt_config(config),
        "chat_template": tokenizer.chat_template,
        "rows": sum(s.rows for s in shards),
        "shards": [{"file": s.path.name, "digest": s.digest, "rows": s.rows} for s in shards],
    }, indent=2), manifest)


def _write_shard(
    ids: list[str],
    problems: list[str],
    tokenizer: PreTrainedTokenizerBase,
    config: PromptConfig,
    path: Path,
    digest: str,
) -> None:
    rendered = render_prompts(tokenizer, problems, config)
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
