"""`Layout` is the one place that knows where artifacts live; the catalog reads the same templates."""

import re
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

from gainrl_ops.core import layout as tree
from gainrl_ops.core.keys import ScoresKey
from gainrl_ops.core.layout import Layout, Template
from gainrl_ops.curriculum.catalog import SOURCES

VALUES = {
    "dataset": "gsm8k", "version": "00112233aabbccdd", "prompt_fingerprint": "0123456789abcdef", "checkpoint": "fedcba9876543210", "index": 7,
    "run": "gainrl-demo", "name": "base", "digest": "00ff", "plot": "score_histogram", "build": "embedded-1", "rest": "a/b.bin",
}


@pytest.mark.parametrize("template", tree.TREE, ids=lambda t: t.pattern)
def test_each_template_finds_the_paths_it_makes(template: Template, tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    path = layout.path(template, **{k: VALUES[k] for k in template.fields()})
    assert layout.kind_of(path) is not None
    relative = path.relative_to(tmp_path).as_posix()
    if "rest" in template.fields():
        return  # folders of anything (weights, Dagster's own files) are never globbed
    assert fnmatchcase(relative, template.glob()), "the catalog's glob finds what the writer writes"
    written = {k: (f"{VALUES[k]:05d}" if k == "index" else str(VALUES[k])) for k in template.fields()}
    assert {k: re.search(template.regex(k), "/" + relative).group(1) for k in template.fields()} == written


def test_regex_extracts_every_field_from_a_made_path(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    path = "/" + layout.path(tree.SCORE_PART, **{k: VALUES[k] for k in tree.SCORE_PART.fields()}).relative_to(tmp_path).as_posix()
    assert path == "/scores/dataset=gsm8k/version=00112233aabbccdd/prompts=0123456789abcdef/checkpoint=fedcba9876543210/parts/part-00007.parquet"
    assert re.search(tree.SCORE_PART.regex("version"), path).group(1) == "00112233aabbccdd"
    assert re.search(tree.SCORE_PART.regex("dataset"), path).group(1) == "gsm8k"
    assert re.search(tree.SCORE_PART.regex("prompt_fingerprint"), path).group(1) == "0123456789abcdef"
    assert re.search(tree.SCORE_PART.regex("checkpoint"), path).group(1) == "fedcba9876543210"


def test_staging_and_temporary_files_are_not_published(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    staging = layout.scores_staging(ScoresKey("gsm8k", "00112233aabbccdd", "0123456789abcdef", "fedcba9876543210")) / "part-00000.parquet"
    assert not fnmatchcase(staging.relative_to(tmp_path).as_posix(), tree.SCORE_PART.glob())
    assert layout.kind_of(staging) is None
    temporary = layout.prompts("gsm8k", "00112233aabbccdd").with_name(".prompts.parquet.x1y2.tmp")
    assert layout.kind_of(temporary) is None


@pytest.mark.parametrize("name", ["../escape", "/abs", "a/b", ".hidden", "_staging", "", "x y", "a[1]"])
def test_names_that_would_leave_their_folder_are_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must match"):
        Layout(tmp_path).prompts(name, "00112233aabbccdd")


def test_glob_characters_in_the_root_are_literal(tmp_path: Path) -> None:
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    layout = Layout(tmp_path / "home[1]*?")
    target = layout.prompts("gsm8k", "00112233aabbccdd")
    target.parent.mkdir(parents=True)
    pq.write_table(pa.table({"id": ["a"]}), target)
    assert duckdb.sql(f"SELECT count(*) FROM glob('{layout.glob(tree.PROMPTS)}')").fetchall() == [(1,)]


def test_every_catalog_view_reads_a_layout_template() -> None:
    assert {s.view: s.template for s in SOURCES} == {
        "checkpoints": tree.CHECKPOINT_RECORD, "prompts": tree.PROMPTS, "rejects": tree.REJECTS, "tokens": tree.SHARD,
        "scores": tree.SCORES, "epochs": tree.EPOCHS, "selections": tree.SELECTIONS, "rollouts": tree.ROLLOUTS, "evaluations": tree.EVALUATION,
        "diagnostics": tree.DIAGNOSTICS, "imported_rankings": tree.IMPORTED_RANKING, "pass_rates": tree.PASS_RATES,
    }
