"""A failure never takes away what is served.

The serving rule (`gainrl_ops.data.versions`) on literal label states, and `gainrl score` run a
second time on the same name with more rows while the disk fills up at each of its stages (a
small tmpfs as the storage root): each failure is one line with exit code 2, and every view
reads what it read before.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import pytest

from gainrl_ops import cli
from gainrl_ops.core.keys import ScoresKey
from gainrl_ops.core.layout import Layout
from gainrl_ops.core.storage import restored_on_error, write_text_atomic
from gainrl_ops.curriculum.catalog import query, refresh_if_changed
from gainrl_ops.data.versions import DatasetLabel, loaded_version, mark_loaded, served_version, settle

N = 30
SHARD = 10
OLD, NEW, OTHER = "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb", "cccccccccccccccc"
CHECKPOINT = "0123456789abcdef"


def load(layout: Layout, version: str) -> str | None:
    """A load of `version` as raw_dataset does it: provenance, loaded label, then the rule."""
    mark_loaded(layout, DatasetLabel("math", version, f"/data/{version}.jsonl", 3, "2026-12-01T00:00:00+00:00", 4))
    return settle(layout, "math")


def publish(layout: Layout, version: str) -> str | None:
    """A checkpoint's scores of `version` published, then the rule."""
    scores = layout.ranked_scores(ScoresKey("math", version, "1111222233334444", CHECKPOINT))
    scores.parent.mkdir(parents=True)
    scores.write_bytes(b"")
    return settle(layout, "math")


def test_a_first_load_is_served_at_once(gainrl_home: Path) -> None:
    assert load(Layout(gainrl_home), OLD) == OLD


def test_a_new_version_is_served_only_once_its_scores_are_published(gainrl_home: Path) -> None:
    layout = Layout(gainrl_home)
    load(layout, OLD)
    publish(layout, OLD)
    assert load(layout, NEW) == OLD, "the scored version stays served while the new one has no scores"
    assert (loaded_version(layout, "math"), served_version(layout, "math")) == (NEW, OLD)
    staging = layout.scores_staging(ScoresKey("math", NEW, "1111222233334444", CHECKPOINT))
    staging.mkdir(parents=True)
    assert settle(layout, "math") == OLD, "a run in progress publishes nothing"
    assert publish(layout, NEW) == NEW


def test_a_version_without_scores_gives_way_to_the_next_load(gainrl_home: Path) -> None:
    layout = Layout(gainrl_home)
    load(layout, OLD)
    assert load(layout, NEW) == NEW, "nothing published is served: there is nothing to keep"
    publish(layout, NEW)
    assert load(layout, OTHER) == NEW
    assert load(layout, NEW) == NEW, "loading the served version again changes nothing"


@pytest.mark.parametrize("before", ["old ranking", None])
def test_a_failed_block_puts_the_file_back_as_it_was(tmp_path: Path, before: str | None) -> None:
    target = tmp_path / "ranking.parquet"
    if before is not None:
        target.write_text(before)
    with pytest.raises(OSError), restored_on_error(target):
        write_text_atomic("new ranking", target)
        raise OSError(28, "No space left on device")
    assert (target.read_text() if target.exists() else None) == before
    with restored_on_error(target):
        write_text_atomic("new ranking", target)
    assert target.read_text() == "new ranking" and sorted(p.name for p in tmp_path.iterdir()) == ["ranking.parquet"]


def problems(n: int) -> list[dict[str, str]]:
    return [{"problem": f"Sam reads {i} pages and then {i % 5 + 3} more. How many pages?", "answer": str(i + i % 5 + 3)} for i in range(n)]


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def small_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A 32 MiB tmpfs holding the storage root (`home` inside it)."""
    if os.geteuid() != 0:
        pytest.skip("filling a disk needs a tmpfs, and mounting one needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(disk)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    monkeypatch.setenv("GAINRL_HOME", str(disk / "home"))
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> None:
    """Take every free byte of the disk."""
    with open(disk / "ballast", "ab", buffering=0) as ballast:
        for size in (1 << 20, 4096, 1):
            try:
                while ballast.write(b"\0" * size):
                    pass
            except OSError:
                pass


def filling_before(monkeypatch: pytest.MonkeyPatch, disk: Path, where: str, when: Callable[..., bool] = lambda *a, **k: True) -> None:
    """Fill the disk just before the first call of `where` (module.function) that `when` accepts."""
    module_name, name = where.rsplit(".", 1)
    module = importlib.import_module(module_name)
    real = getattr(module, name)

    def fill_then_call(*args: object, **kwargs: object) -> object:
        if when(*args, **kwargs) and not (disk / "ballast").exists():
            fill(disk)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, fill_then_call)


# Where each stage of `gainrl score` first writes, in the order the command runs them.
STAGES: list[tuple[str, str, Callable[..., bool]]] = [
    ("load", "gainrl_ops.data.sources.write_dataset", lambda *a, **k: True),
    ("tokenize", "gainrl_ops.data.shards.write_parquet_atomic", lambda *a, **k: True),
    ("score", "gainrl_ops.scoring.scorer.write_parquet_atomic", lambda *a, **k: True),
    ("publish", "gainrl_ops.scoring.publish.compact", lambda *a, **k: True),
    ("serve", "gainrl_ops.data.versions.write_text_atomic", lambda text, target: Path(target) == Layout.default().dataset_label("pages")),
    ("catalog refresh", "gainrl_ops.cli.refresh_catalog", lambda *a, **k: True),
]
SERVING_VIEWS = ("prompts", "rejects", "tokens", "scores", "curriculum", "rankings", "dataset_labels")


def views(home: Path) -> dict[str, pl.DataFrame]:
    """Every view a reader sees (after the refresh `gainrl sql` makes first)."""
    assert refresh_if_changed(home) == [], "no artifact is unreadable"
    seen = {view: query(home, f"SELECT * FROM {view} ORDER BY ALL") for view in SERVING_VIEWS}
    seen["dataset_versions"] = query(home, "SELECT * FROM dataset_versions WHERE served OR loaded ORDER BY ALL")
    return seen


def test_a_full_disk_at_any_stage_of_score_leaves_every_view_as_it_was(
    small_disk: Path, tmp_path: Path, tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    home = small_disk / "home"
    data = write_jsonl(tmp_path / "pages.jsonl", problems(N))
    args = ["score", "--data", str(data), "--model", str(tiny_model_path), "--name", "pages", "--shard-size", str(SHARD)]
    assert cli.main(args) == 0
    before = views(home)
    assert before["curriculum"].height == N
    write_jsonl(data, problems(N + 1))
    for stage, where, when in STAGES:
        capsys.readouterr()
        with monkeypatch.context() as patched:
            filling_before(patched, small_disk, where, when)
            assert cli.main(args) == 2, stage
        (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("gainrl ")]  # not the progress bars
        assert line.startswith(f"gainrl score: {home}") or f'"{home}/' in line, f"disk full at {stage}: the line names the file: {line}"
        assert "No space left on device" in line, line
        (small_disk / "ballast").unlink()
        after = views(home)
        for view, rows in before.items():
            assert after[view].equals(rows), f"disk full at {stage}: view {view} changed"
    exported = tmp_path / "served.jsonl"
    assert cli.main(["export", "--dataset", "pages", "--format", "jsonl", "--out", str(exported)]) == 0
    assert [json.loads(line)["id"] for line in exported.read_text().splitlines()] == before["curriculum"].sort("rank")["id"].to_list()
    capsys.readouterr()
    assert cli.main(args) == 0, "with space again, the same command publishes the new version"
    served = views(home)
    assert served["curriculum"].height == N + 1
    assert served["dataset_versions"].select("served", "loaded", "prompts", "file", "rows_read").rows() == [(True, True, N + 1, str(data), N + 1)]
    leftovers = [p for p in home.rglob("*") if p.name.startswith(".")]
    assert leftovers == []
