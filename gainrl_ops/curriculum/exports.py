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

Every format is written from one `curriculum` ranking snapshot (`ranking.export_ranking`),
read once (`read_curriculum`): the `curriculum_export` asset reads the snapshot its
`curriculum` partition wrote, and `gainrl export` snapshots the served version first, as that
asset would. A failed export leaves the previous files (and their sidecars) in place.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from gainrl_ops.core.keys import ScoresKey
from gainrl_ops.core.layout import Layout
from gainrl_ops.core.progress import bar
from gainrl_ops.core.storage import atomic_directory, atomic_path
from gainrl_ops.curriculum.catalog import connect_readonly
from gainrl_ops.curriculum.ranking import export_ranking, snapshot_info
from gainrl_ops.data.prompts import PromptConfig, chat_messages
from gainrl_ops.data.shards import MANIFEST
from gainrl_ops.data.versions import current_label

if TYPE_CHECKING:  # imported where used: loading the Dagster definitions should not pay for polars
    import polars as pl

FORMATS = ("verl", "hf", "jsonl", "pt")
# File names inside an export folder (`Layout.export_dir`), one per format.
FILES = {"verl": "curriculum.verl.parquet", "hf": "hf", "jsonl": "curriculum.jsonl", "pt": "curriculum.pt"}
_META = b"gainrl.export"
_BAR_STEP = 10_000  # prompts rendered between two moves of the bar


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
    the dataset's served version (any scored one if none is registered)."""
    with connect_readonly(layout.root) as con:
        rows = con.execute(
            """SELECT s.checkpoint, s.prompt_fingerprint FROM (SELECT DISTINCT checkpoint, prompt_fingerprint FROM scores WHERE dataset = ?) s
               LEFT JOIN checkpoints c ON c.fingerprint = s.checkpoint ORDER BY c.registered_at DESC NULLS LAST, s.checkpoint LIMIT 1""",
            [dataset],
        ).fetchall()
    if not rows:
        raise ValueError(f"dataset {dataset!r} has no scores yet: run gainrl score (or materialize angle_scores) first")
    return rows[0]


@dataclass(frozen=True)
class RankedCurriculum:
    """One ranking snapshot with everything the export formats write: the prompts in rank order
    (rank, id, angle_score, c_intra, c_inter, problem, answer, source, row), what they were
    ranked by, and the prompt settings they were scored with."""

    frame: pl.DataFrame
    info: ExportInfo
    prompt: PromptConfig


def served_ranking(layout: Layout, dataset: str, checkpoint: str | None = None) -> Path:
    """Snapshot the served version's ranking by `checkpoint` ("latest" or None: `latest_checkpoint`)
    as the `curriculum` asset does, and return the snapshot."""
    label = current_label(layout, dataset)
    if checkpoint in (None, "latest"):
        checkpoint, fingerprint = latest_checkpoint(layout, dataset)
    else:
        with connect_readonly(layout.root) as con:
            found = con.execute("SELECT DISTINCT prompt_fingerprint FROM scores WHERE dataset = ? AND checkpoint = ?", [dataset, checkpoint]).fetchall()
        if not found:
            raise ValueError(f"checkpoint {checkpoint} has not scored the served version of dataset {dataset!r}")
        ((fingerprint,),) = found
    return export_ranking(layout, ScoresKey(dataset, label.version, fingerprint, checkpoint))


def read_curriculum(layout: Layout, ranking: Path) -> RankedCurriculum:
    """A ranking snapshot, joined with each prompt's answer, source and input row of its dataset
    version, with the prompt settings of its shard set: read once, for every format."""
    import polars as pl

    made = snapshot_info(ranking)
    dataset, version, fingerprint = made["dataset"], made["dataset_version"], made["prompt_fingerprint"]
    prompts = pl.read_parquet(layout.prompts(dataset, version), columns=["id", "answer", "source", "row"])
    frame = (
        pl.read_parquet(ranking, columns=["rank", "id", "angle_score", "c_intra", "c_inter", "problem"])
        .sort("rank")
        .join(prompts, on="id", how="left", maintain_order="left")
    )
    manifest = json.loads((layout.shards(dataset, version, fingerprint) / MANIFEST).read_text())["prompt_config"]
    prompt = PromptConfig(manifest["system_prompt"], tuple(tuple(shot) for shot in manifest["few_shot"]), manifest["max_tokens"])
    info = ExportInfo(dataset, version, fingerprint, made["checkpoint"], made["code_version"], frame.height, "")
    return RankedCurriculum(frame, info, prompt)


def export_curriculum(curriculum: RankedCurriculum, fmt: str, out: Path) -> ExportInfo:
    """Write `curriculum` to `out` in format `fmt` (see FORMATS)."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
    info = ExportInfo(**{**asdict(curriculum.info), "format": fmt})
    {"verl": _verl, "hf": _hf, "jsonl": _jsonl, "pt": _pt}[fmt](curriculum.frame, info, curriculum.prompt, Path(out))
    return info


def _messages(frame: pl.DataFrame, prompt: PromptConfig) -> list[list[dict[str, str]]]:
    """Each problem as the chat the scorer rendered: system prompt, few-shot turns, question.
    With a bar in a terminal: these Python objects are most of a large export's time."""
    problems = frame["problem"].to_list()
    messages: list[list[dict[str, str]]] = []
    with bar(len(problems), f"export {frame.height} prompts", unit="prompt") as progress:
        for start in range(0, len(problems), _BAR_STEP):  # the bar moves a step at a time: a call a row costs
            messages += [chat_messages(problem, prompt) for problem in problems[start : start + _BAR_STEP]]
            progress.update(min(_BAR_STEP, len(problems) - start))
    return messages


@contextlib.contextmanager
def _with_sidecar(out: Path, info: ExportInfo) -> Iterator[Path]:
    """A temporary path to write `out` to; when the block succeeds, the sidecar JSON and then
    `out` take their names, and when it fails neither changes."""
    with atomic_path(out) as tmp, atomic_path(out.with_name(out.name + ".gainrl.json")) as sidecar:
        sidecar.write_text(json.dumps(asdict(info), indent=2))
        yield tmp


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
    with _with_sidecar(out, info) as tmp, open(tmp, "w") as f:
        for messages, (id_, answer, rank, score, intra, inter) in zip(
            _messages(frame, prompt), frame.select("id", "answer", "rank", "angle_score", "c_intra", "c_inter").iter_rows(), strict=True
        ):
            record = {"prompt": messages, "answer": answer, "id": id_, "rank": rank, "angle_score": score, "c_intra": intra, "c_inter": inter,
                      "checkpoint": info.checkpoint}
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def _pt(frame: pl.DataFrame, info: ExportInfo, prompt: PromptConfig, out: Path) -> None:
    import torch

    # Saved through a file object: torch names the archive's folder after a path (here a random
    # temporary name) but "archive" for a stream, so the same ranking gives the same bytes.
    with _with_sidecar(out, info) as tmp, open(tmp, "wb") as f:
        torch.save(torch.tensor(frame["row"].to_list(), dtype=torch.int64), f)
