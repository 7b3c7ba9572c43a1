"""The ranked curriculum in the formats other trainers read, and rankings made elsewhere read in.

Every export is in rank order (rank 1 = highest angle score first), written atomically, and
carries the checkpoint fingerprint and scoring code version:

=======  ==========================================  =========================================
format   file                                        read by
=======  ==========================================  =========================================
verl     Parquet in verl's RL layout (data_source,   verl (`data.train_files`), anything that
         ability, prompt, reward_model, extra_info)  reads Parquet or `datasets`
hf       a `datasets.Dataset` folder (save_to_disk)  TRL and your own scripts (`load_from_disk`)
jsonl    one JSON object per line                    OpenRLHF, prime-rl
pt       1-D int64 tensor of input-file row indices  the published GAIN-RL forks
         (`angle_sorted_data/*.pt` layout)           (`torch.load(path, weights_only=True)`)
=======  ==========================================  =========================================

The `pt` index counts rows of the input file; rows the loader rejected or dropped as
duplicates have no score and are left out.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from gainrl_ops.core.layout import Layout
from gainrl_ops.core.storage import atomic_directory, atomic_path, write_text_atomic
from gainrl_ops.curriculum.catalog import connect_readonly
from gainrl_ops.data.prompts import PromptConfig, chat_messages
from gainrl_ops.data.shards import MANIFEST
from gainrl_ops.data.sources import current_label

if TYPE_CHECKING:  # imported where used: loading the Dagster definitions should not pay for polars
    import polars as pl

FORMATS = ("verl", "hf", "jsonl", "pt")
# File names inside an export folder (`Layout.export_dir`), one per format.
FILES = {"verl": "curriculum.verl.parquet", "hf": "hf", "jsonl": "curriculum.jsonl", "pt": "curriculum.pt"}
_META = b"gainrl.export"


@dataclass(frozen=True)
class ExportInfo:
    """What an export was made from; stored with it (Parquet metadata, a sidecar JSON, or the
    dataset's description)."""

    dataset: str
    dataset_version: str
    prompt_fingerprint: str
    checkpoint: str
    code_version: str
    rows: int
    format: str


def latest_checkpoint(layout: Layout, dataset: str) -> tuple[str, str]:
    """(checkpoint, prompt fingerprint) of the most recently registered checkpoint that scored
    the dataset's current version (any scored one if none is registered)."""
    with connect_readonly(layout.root) as con:
        rows = con.execute(
            """SELECT s.checkpoint, s.prompt_fingerprint FROM (SELECT DISTINCT checkpoint, prompt_fingerprint FROM scores WHERE dataset = ?) s
               LEFT JOIN checkpoints c ON c.fingerprint = s.checkpoint ORDER BY c.registered_at DESC NULLS LAST, s.checkpoint LIMIT 1""",
            [dataset],
        ).fetchall()
    if not rows:
        raise ValueError(f"dataset {dataset!r} has no scores yet: run gainrl score (or materialize angle_scores) first")
    return rows[0]


def ranked_rows(layout: Layout, dataset: str, checkpoint: str | None = None) -> tuple[pl.DataFrame, ExportInfo, PromptConfig]:
    """The current version's ranking by `checkpoint` ("latest" or None: `latest_checkpoint`),
    joined with each prompt's answer, source and input row, with the prompt settings it was scored with."""
    label = current_label(layout, dataset)
    if checkpoint in (None, "latest"):
        checkpoint, fingerprint = latest_checkpoint(layout, dataset)
    else:
        with connect_readonly(layout.root) as con:
            found = con.execute("SELECT DISTINCT prompt_fingerprint FROM scores WHERE dataset = ? AND checkpoint = ?", [dataset, checkpoint]).fetchall()
        if not found:
            raise ValueError(f"checkpoint {checkpoint} has not scored the current version of dataset {dataset!r}")
        ((fingerprint,),) = found
    with connect_readonly(layout.root) as con:
        frame = con.sql(
            """SELECT s.rank, s.id, s.angle_score, s.c_intra, s.c_inter, p.problem, p.answer, p.source, p."row", s.code_version
               FROM scores s JOIN prompts p USING (dataset, dataset_version, id)
               WHERE s.dataset = ? AND s.checkpoint = ? AND s.prompt_fingerprint = ? ORDER BY s.rank""",
            params=[dataset, checkpoint, fingerprint],
        ).pl()
    manifest = json.loads((layout.shards(dataset, label.version, fingerprint) / MANIFEST).read_text())["prompt_config"]
    prompt = PromptConfig(manifest["system_prompt"], tuple(tuple(shot) for shot in manifest["few_shot"]), manifest["max_tokens"])
    info = ExportInfo(dataset, label.version, fingerprint, checkpoint, ",".join(frame["code_version"].unique().sort()), frame.height, "")
    return frame.drop("code_version"), info, prompt


def export_curriculum(layout: Layout, dataset: str, fmt: str, out: Path, checkpoint: str | None = None) -> ExportInfo:
    """Write the ranking of `dataset` by `checkpoint` to `out` in format `fmt` (see FORMATS)."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
    frame, info, prompt = ranked_rows(layout, dataset, checkpoint)
    info = ExportInfo(**{**asdict(info), "format": fmt})
    {"verl": _verl, "hf": _hf, "jsonl": _jsonl, "pt": _pt}[fmt](frame, info, prompt, Path(out))
    return info


def _messages(frame: pl.DataFrame, prompt: PromptConfig) -> list[list[dict[str, str]]]:
    """Each problem as the chat the scorer rendered: system prompt, few-shot turns, question."""
    return [chat_messages(problem, prompt) for problem in frame["problem"].to_list()]


def _sidecar(out: Path, info: ExportInfo) -> None:
    write_text_atomic(json.dumps(asdict(info), indent=2), out.with_name(out.name + ".gainrl.json"))


def _verl(frame: pl.DataFrame, info: ExportInfo, prompt: PromptConfig, out: Path) -> None:
    table = pa.table({
        "data_source": frame["source"].to_list(),
        "ability": ["math"] * frame.height,
        "prompt": _messages(frame, prompt),
        "reward_model": [{"style": "rule", "ground_truth": a} for a in frame["answer"].to_list()],
        "extra_info": [
            {"index": row, "rank": rank, "angle_score": score, "c_intra": intra, "c_inter": inter, "checkpoint": info.checkpoint, "id": id_}
            for row, rank, score, intra, inter, id_ in frame.select("row", "rank", "angle_score", "c_intra", "c_inter", "id").iter_rows()
        ],
    })
    table = table.replace_schema_metadata({_META: json.dumps(asdict(info)).encode()})
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def _hf(frame: pl.DataFrame, info: ExportInfo, prompt: PromptConfig, out: Path) -> None:
    import datasets  # about 1 s to import; only this format needs it

    columns = {"prompt": _messages(frame, prompt), **{c: frame[c].to_list() for c in ("answer", "id", "rank", "angle_score", "c_intra", "c_inter", "row")}}
    dataset = datasets.Dataset.from_dict(columns, info=datasets.DatasetInfo(description=json.dumps(asdict(info))))
    with atomic_directory(out) as tmp:
        dataset.save_to_disk(str(tmp))


def _jsonl(frame: pl.DataFrame, info: ExportInfo, prompt: PromptConfig, out: Path) -> None:
    with atomic_path(out) as tmp, open(tmp, "w") as f:
        for messages, (id_, answer, rank, score, intra, inter) in zip(
            _messages(frame, prompt), frame.select("id", "answer", "rank", "angle_score", "c_intra", "c_inter").iter_rows(), strict=True
        ):
            record = {"prompt": messages, "answer": answer, "id": id_, "rank": rank, "angle_score": score, "c_intra": intra, "c_inter": inter,
                      "checkpoint": info.checkpoint}
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    _sidecar(out, info)


def _pt(frame: pl.DataFrame, info: ExportInfo, prompt: PromptConfig, out: Path) -> None:
    import torch

    with atomic_path(out) as tmp:
        torch.save(torch.tensor(frame["row"].to_list(), dtype=torch.int64), tmp)
    _sidecar(out, info)
