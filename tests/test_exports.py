"""Exports for other trainers (verl, hf, jsonl, pt) read back in rank order; rankings come in from .pt."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import polars as pl
import pyarrow.parquet as pq
import pytest
import torch

from gainrl_ops import cli
from gainrl_ops.core.layout import Layout
from gainrl_ops.curriculum.catalog import query
from gainrl_ops.curriculum.exports import FORMATS
from gainrl_ops.curriculum.rankings import ranking_agreement
from gainrl_ops.data.prompts import DEFAULT_SYSTEM_PROMPT

N = 40


@pytest.fixture
def scored(tmp_path: Path, gainrl_home: Path, tiny_model_path: Path) -> tuple[Path, pl.DataFrame]:
    """A dataset file with one bad row and one duplicate, scored; and its curriculum."""
    rows = [{"problem": f"Ann has {i} pens and gets {i % 5 + 1} more. How many?", "answer": str(i + i % 5 + 1)} for i in range(N)]
    rows.insert(7, {"problem": "No answer here", "answer": None})
    rows.insert(20, dict(rows[3]))
    data = tmp_path / "pens.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["score", "--data", str(data), "--model", str(tiny_model_path), "--name", "pens", "--shard-size", "16", "--on-error", "skip"]
    assert cli.main(args) == 0
    curriculum = query(gainrl_home, "SELECT rank, id, angle_score, problem, checkpoint FROM curriculum WHERE dataset = 'pens' ORDER BY rank")
    assert curriculum.height == N
    return data, curriculum


def export(fmt: str, out: Path, *extra: str) -> None:
    assert cli.main(["export", "--dataset", "pens", "--format", fmt, "--out", str(out), *extra]) == 0


def test_verl_parquet_round_trip_with_pyarrow_and_datasets(scored, tmp_path: Path) -> None:
    _, curriculum = scored
    out = tmp_path / "train.parquet"
    export("verl", out)
    table = pq.read_table(out)
    assert table.column_names == ["data_source", "ability", "prompt", "reward_model", "extra_info"]
    rows = table.to_pylist()
    assert [r["extra_info"]["id"] for r in rows] == curriculum["id"].to_list()
    assert [r["extra_info"]["rank"] for r in rows] == list(range(1, N + 1))
    first = rows[0]
    assert first["prompt"][0] == {"role": "system", "content": DEFAULT_SYSTEM_PROMPT}
    assert first["prompt"][-1] == {"role": "user", "content": curriculum["problem"][0]}
    assert first["reward_model"]["style"] == "rule" and first["reward_model"]["ground_truth"]
    assert first["extra_info"]["checkpoint"] == curriculum["checkpoint"][0]
    meta = json.loads(table.schema.metadata[b"gainrl.export"])
    assert meta["checkpoint"] == curriculum["checkpoint"][0] and meta["code_version"] and meta["rows"] == N
    loaded = datasets.load_dataset("parquet", data_files=str(out), split="train")
    assert loaded["extra_info"][0]["id"] == curriculum["id"][0] and len(loaded) == N


def test_hf_dataset_round_trip(scored, tmp_path: Path) -> None:
    _, curriculum = scored
    out = tmp_path / "hf"
    export("hf", out)
    loaded = datasets.load_from_disk(str(out))
    assert loaded["id"] == curriculum["id"].to_list() and loaded["rank"] == list(range(1, N + 1))
    assert loaded["angle_score"] == pytest.approx(curriculum["angle_score"].to_list())
    assert {"prompt", "answer", "c_intra", "c_inter"} <= set(loaded.column_names)
    assert json.loads(loaded.info.description)["checkpoint"] == curriculum["checkpoint"][0]


def test_jsonl_round_trip(scored, tmp_path: Path) -> None:
    _, curriculum = scored
    out = tmp_path / "train.jsonl"
    export("jsonl", out, "--checkpoint", curriculum["checkpoint"][0])
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in lines] == curriculum["id"].to_list()
    assert {"prompt", "answer", "id", "rank", "angle_score", "c_intra", "c_inter"} <= set(lines[0])
    assert json.loads(out.with_name(out.name + ".gainrl.json").read_text())["checkpoint"] == curriculum["checkpoint"][0]


def test_pt_indices_are_input_rows_best_first_without_rejected_or_duplicate_rows(scored, tmp_path: Path) -> None:
    data, curriculum = scored
    out = tmp_path / "sorted.pt"
    export("pt", out)
    index = torch.load(out, weights_only=True)
    assert index.dtype == torch.int64 and index.dim() == 1 and index.numel() == N
    lines = data.read_text().splitlines()
    problems = [json.loads(lines[i])["problem"] for i in index.tolist()]
    assert problems == curriculum["problem"].to_list()
    assert 7 not in index.tolist() and 20 not in index.tolist(), "the rejected and the duplicate row have no rank"


def test_a_bad_format_or_checkpoint_is_one_line(scored, tmp_path: Path, capsys) -> None:
    capsys.readouterr()
    assert cli.main(["export", "--dataset", "pens", "--format", "pt", "--out", str(tmp_path / "x.pt"), "--checkpoint", "0" * 16]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "has not scored" in line
    assert cli.main(["export", "--dataset", "nope", "--format", "pt", "--out", str(tmp_path / "x.pt")]) == 2


def test_an_exported_pt_imports_back_as_the_same_ranking(scored, tmp_path: Path, gainrl_home: Path) -> None:
    _, curriculum = scored
    export("pt", out := tmp_path / "ours.pt")
    assert cli.main(["import-ranking", "--dataset", "pens", "--ranking", str(out), "--label", "roundtrip"]) == 0
    back = query(gainrl_home, "SELECT id FROM rankings WHERE ranking = 'roundtrip' AND source = 'external' ORDER BY rank")
    assert back["id"].to_list() == curriculum["id"].to_list()


def test_ranking_agreement_compares_every_pair_and_length(scored, tmp_path: Path, gainrl_home: Path) -> None:
    data, _ = scored
    n_input = len(data.read_text().splitlines())
    torch.save(torch.arange(n_input - 1, -1, -1, dtype=torch.int64), reverse := tmp_path / "reverse.pt")
    torch.save(torch.arange(n_input, dtype=torch.int64), forward := tmp_path / "file_order.pt")
    for path in (reverse, forward):
        assert cli.main(["import-ranking", "--dataset", "pens", "--ranking", str(path)]) == 0
    table = ranking_agreement(Layout(gainrl_home), "pens", k=10)
    pair = table.filter((pl.col("a") == "external:file_order") & (pl.col("b") == "external:reverse"))
    assert pair["spearman"].to_list() == [pytest.approx(-1.0)] and pair["top_k_overlap"].to_list() == [0.0]
    lengths = table.filter(pl.col("b").str.starts_with("question length"))
    assert lengths.height == 3 and lengths["prompts"].to_list() == [N, N, N]


@pytest.mark.parametrize(("content", "message"), [
    (lambda: {"not": "a tensor"}, "holds a dict, not a tensor"),
    (lambda: torch.zeros(3, 3, dtype=torch.int64), "expected 1-D row indices"),
    (lambda: torch.arange(42, dtype=torch.float32), "dtype torch.float32"),
    (lambda: torch.tensor([0] * 42, dtype=torch.int64), "not a permutation: row 0 appears 42 times"),
    (lambda: torch.tensor([3, 5, 3], dtype=torch.int64), "not a permutation: row 3 appears 2 times"),
    (lambda: torch.arange(1, 43, dtype=torch.int64), "index 42 at position 41 is out of range"),
    (None, "not a tensor file"),
])
def test_bad_ranking_files_are_one_line_errors(scored, tmp_path: Path, capsys, content, message: str) -> None:
    path = tmp_path / "bad.pt"
    if content is None:
        path.write_bytes(b"this is not a torch file")
    else:
        torch.save(content(), path)
    capsys.readouterr()
    assert cli.main(["import-ranking", "--dataset", "pens", "--ranking", str(path)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"gainrl import-ranking: {path}: ") and message in line


def test_formats_listed() -> None:
    assert FORMATS == ("verl", "hf", "jsonl", "pt")
