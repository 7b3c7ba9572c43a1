"""`gainrl status` and `gainrl status --json`: what a store holds and the next command, on an
empty store and on one written with the real schemas (test_catalog's synthetic artifacts plus
an evaluation, a diagnostic, a finished run and a run cut short); the next-command rule on
literals; and that it stays as light as `gainrl sql`."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from test_catalog import CK_BASE, CK_TUNED, DATASET, IDS, PROMPT_FP, VERSION, register, write_prompts, write_scores
from test_imports import heavy_modules_after

from gainrl_ops import cli
from gainrl_ops.core import columns as registry
from gainrl_ops.core.keys import ScoresKey
from gainrl_ops.core.layout import Layout
from gainrl_ops.core.storage import write_parquet_atomic
from gainrl_ops.curriculum.catalog import refresh_catalog
from gainrl_ops.curriculum.exports import FILES
from gainrl_ops.curriculum.ranking import export_ranking
from gainrl_ops.data.versions import DatasetLabel, mark_loaded
from gainrl_ops.store.status import (
    CheckpointStatus,
    DatasetStatus,
    RunStatus,
    export_format,
    next_step,
    store_status,
)
from gainrl_ops.training.resume import write_resume_state

OLD_VERSION = "9999888877776666"
CK_LOOSE = "aaaaaaaaaaaaaaaa"  # scored with `gainrl score`, never registered
LIGHT = ("torch", "transformers", "trl", "datasets", "polars", "pyarrow", "numpy", "pandas")


def _epoch(run: str, epoch: int, held_out: float | None, mu_next: float, checkpoint: str | None) -> dict:
    return {
        "run": run, "epoch": epoch, "sampler": "gainrl", "feedback": "rollout", "mu": mu_next - 10.0, "sigma": 50.0,
        "accuracy": 0.25 * (epoch + 1), "held_out_accuracy": held_out, "feedback_angle": 0.1, "prompt_score": 5.0,
        "mu_next": mu_next, "seconds": 10.0 * (epoch + 1), "feedback_seconds": 1.0, "checkpoint_path": checkpoint,
    }


def _write_store(root: Path) -> None:
    layout = Layout(root)
    write_prompts(root)
    mark_loaded(layout, DatasetLabel(DATASET, VERSION, "in.jsonl", len(IDS), "2026-11-25T00:00:00+00:00", len(IDS) + 1))
    # An older content version of the same name: stored, neither served nor loaded.
    old = pa.Table.from_pylist([{"id": "o1", "problem": "1 + 1?", "answer": "2", "source": "s", "difficulty": None, "metadata": "{}", "row": 0}])
    write_parquet_atomic(old.cast(registry.arrow_schema(registry.PROMPT)), layout.prompts(DATASET, OLD_VERSION))
    mark_loaded(layout, DatasetLabel(DATASET, OLD_VERSION, "old.jsonl", 1, "2026-11-01T00:00:00+00:00", 1))
    mark_loaded(layout, DatasetLabel(DATASET, VERSION, "in.jsonl", len(IDS), "2026-11-25T00:00:00+00:00", len(IDS) + 1))

    for checkpoint, seed in ((CK_BASE, 1), (CK_TUNED, 2), (CK_LOOSE, 3)):
        write_scores(root, checkpoint, seed=seed)
    register(root, "base", CK_BASE, "2025-01-01T00:00:00+00:00", None)
    register(root, "tuned", CK_TUNED, "2025-02-01T12:30:00+00:00", CK_BASE)
    refresh_catalog(root)

    base = ScoresKey(DATASET, VERSION, PROMPT_FP, CK_BASE)
    export_ranking(layout, base)
    layout.report_dir(base).mkdir(parents=True)
    (layout.report_dir(base) / "angle_histogram.png").write_bytes(b"png")
    exports = layout.export_dir(DATASET, VERSION, CK_BASE)
    (exports / FILES["hf"]).mkdir(parents=True)
    (exports / FILES["jsonl"]).write_text("{}\n")
    (exports / (FILES["jsonl"] + ".gainrl.json")).write_text("{}")
    (exports / "_tmp-verl").mkdir()  # an export still being written: not shown

    evaluation = [{"checkpoint": CK_BASE, "id": f"e{i}", "answer": "1", "completion": "1", "predicted": "1" if i else "0", "correct": bool(i)}
                  for i in range(4)]
    write_parquet_atomic(pa.Table.from_pylist(evaluation, schema=registry.arrow_schema(registry.EVALUATION)), layout.evaluation(DATASET, VERSION, CK_BASE))
    layout.evaluation(DATASET, VERSION, CK_TUNED).write_bytes(b"not parquet")  # left out, listed as a problem
    diagnostics = [{"prompt_fingerprint": PROMPT_FP, "id": i, "rank": r + 1, "n_tokens": 6, "grad_norm": 1.0, "gradient_source": "grpo"}
                   for r, i in enumerate(IDS[:3])]
    write_parquet_atomic(pa.Table.from_pylist(diagnostics, schema=registry.arrow_schema((registry.PROMPT_FINGERPRINT, *registry.DIAGNOSTIC))),
                         layout.diagnostics_stem(DATASET, VERSION, CK_BASE).with_suffix(".parquet"))

    epochs = [_epoch("done", 0, 0.4, 10.0, None), _epoch("done", 1, 0.6, 25.0, "/store/done-epoch002")]
    write_parquet_atomic(pa.Table.from_pylist(epochs, schema=registry.arrow_schema(registry.EPOCHS)), layout.epochs("done"))
    # A run killed in its third epoch: two complete resume points, then a save cut short.
    resume = layout.run_resume("cut")
    write_resume_state(resume / "checkpoint-4", "key", {"epochs": [_epoch("cut", 0, None, 12.0, None)], "selected": [[0]], "seconds": 5.0})
    write_resume_state(resume / "checkpoint-8", "key", {"epochs": [_epoch("cut", 0, None, 12.0, None), _epoch("cut", 1, 0.5, 30.0, "/c")],
                                                        "selected": [[0], [1]], "seconds": 9.0})
    (resume / "checkpoint-12").mkdir()
    refresh_catalog(root)


@pytest.fixture
def store(gainrl_home: Path) -> Path:
    _write_store(gainrl_home)
    return gainrl_home


def test_status_of_a_populated_store(store: Path) -> None:
    status = store_status(store)

    (dataset,) = status.datasets
    assert (dataset.name, dataset.version, dataset.loaded_version, dataset.prompts, dataset.rejects, dataset.file) == (
        DATASET, VERSION, None, len(IDS), 1, "in.jsonl")
    assert [(v.version, v.prompts) for v in dataset.older_versions] == [(OLD_VERSION, 1)]

    rows = {c.fingerprint: c for c in status.checkpoints}
    assert [c.fingerprint for c in status.checkpoints] == [CK_BASE, CK_TUNED, CK_LOOSE], "registration order, then unregistered"
    base, tuned, loose = rows[CK_BASE], rows[CK_TUNED], rows[CK_LOOSE]
    assert (base.name, base.dataset, base.scored, base.ranked, base.reported, base.evaluated, base.accuracy, base.diagnosed) == (
        "base", DATASET, len(IDS), True, True, 4, 0.75, 3)
    assert base.exported == ["hf", "jsonl"]
    assert (tuned.name, tuned.parent, tuned.scored, tuned.ranked, tuned.reported, tuned.evaluated, tuned.accuracy, tuned.exported) == (
        "tuned", CK_BASE, len(IDS), False, False, 0, None, [])
    assert (loose.name, loose.registered_at, loose.scored) == ("tiny", None, len(IDS))

    runs = {r.name: r for r in status.runs}
    assert runs["done"] == RunStatus("done", "gainrl", 2, 0.5, 0.6, 25.0, 1, finished=True, resumable=False)
    assert runs["cut"] == RunStatus("cut", "gainrl", 2, 0.5, 0.5, 30.0, 1, finished=False, resumable=True)

    (problem,) = status.problems
    assert problem["view"] == "evaluations" and problem["path"].endswith(f"{CK_TUNED}.parquet")
    assert status.next.command == "make ui" and "run cut stopped after epoch 2" in status.next.why


def test_cli_status_prints_the_screen_and_the_same_as_json(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["status"]) == 0
    screen = capsys.readouterr().out
    lines = screen.splitlines()
    base = next(line for line in lines if line.startswith("base "))
    assert base.split() == ["base", CK_BASE, DATASET, str(len(IDS)), "yes", "yes", "4", "0.750", "3", "hf,jsonl"]
    cut = next(line for line in lines if line.startswith("cut "))
    assert cut.split() == ["cut", "gainrl", "2", "0.500", "0.500", "30.0", "1", "resumable"]
    assert any(line.split()[:5] == [DATASET, VERSION, str(len(IDS)), "1", "-"] for line in lines)
    assert f"{CK_TUNED}.parquet (evaluations)" in screen and lines[-2] == "Next: make ui"

    assert cli.main(["status", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(store_status(store).to_json()))
    assert set(printed) == {"root", "datasets", "checkpoints", "runs", "problems", "next"}
    assert printed["checkpoints"][0]["accuracy"] == 0.75 and printed["runs"][0]["resumable"] is True


def test_an_empty_store_says_what_to_run_first(gainrl_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["status"]) == 0
    screen = capsys.readouterr().out
    assert "Next: make demo" in screen and "gainrl score --data FILE --model MODEL" in screen

    assert cli.main(["status", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["datasets"], printed["checkpoints"], printed["runs"], printed["problems"]) == ([], [], [], [])
    assert printed["next"]["command"] == "make demo" and "gainrl score" in printed["next"]["why"]


def _dataset(name: str = "gsm8k", loaded: str | None = None) -> DatasetStatus:
    return DatasetStatus(name, "1" * 16, loaded, 100, 0, "/data/gsm8k.jsonl", None, [])


def _checkpoint(name: str, scored: int, parent: str | None = None) -> CheckpointStatus:
    return CheckpointStatus(name * 4, name, None, parent, f"/store/{name}", "gsm8k" if scored else None, scored=scored)


def _run(resumable: bool) -> RunStatus:
    return RunStatus("r1", "gainrl", 3, 0.5, None, 40.0, 1, finished=not resumable, resumable=resumable)


@pytest.mark.parametrize(("datasets", "checkpoints", "runs", "command", "why"), [
    ([_dataset(loaded="2" * 16)], [_checkpoint("base", 100)], [], "gainrl score --data /data/gsm8k.jsonl --name gsm8k",
     "2222222222222222 of gsm8k was loaded but has no scores"),
    ([_dataset()], [_checkpoint("base", 0)], [], "gainrl score --data /data/gsm8k.jsonl --name gsm8k --model /store/base",
     "gsm8k has no scores yet"),
    ([_dataset()], [_checkpoint("base", 100), _checkpoint("tune", 0, "basebasebasebase")], [_run(True)], "make ui",
     "r1 stopped after epoch 3"),
    ([_dataset()], [_checkpoint("base", 100), _checkpoint("tune", 0, "basebasebasebase")], [_run(False)],
     "gainrl score --data /data/gsm8k.jsonl --name gsm8k --model /store/tune", "tune has not scored gsm8k"),
    ([_dataset()], [_checkpoint("base", 100)], [], "make ui", "launch the train job"),
    ([_dataset()], [_checkpoint("base", 100)], [_run(False)], "gainrl export --dataset gsm8k --format verl --out gsm8k_curriculum.parquet",
     "every checkpoint is scored"),
], ids=["loaded-not-scored", "never-scored", "resume", "rescore", "train", "export"])
def test_next_step(datasets, checkpoints, runs, command: str, why: str) -> None:
    step = next_step(datasets, checkpoints, runs)
    assert step.command == command and why in step.why


def test_export_format_reads_every_export_file_name() -> None:
    assert {export_format(name) for name in FILES.values()} == set(FILES)
    assert export_format(FILES["pt"] + ".gainrl.json") == "pt"


def test_status_loads_no_dataframe_or_model_library(store: Path) -> None:
    found = heavy_modules_after("""
        from gainrl_ops import cli
        result = [cli.main(["status"]), cli.main(["status", "--json"])]
    """, store, modules=LIGHT)
    assert found == {"loaded": [], "result": [0, 0]}


def test_the_command_prints_only_the_screen(store: Path) -> None:
    """The `gainrl` entry point, in its own process: nothing on stderr, exit included (a heap
    frozen for exit made DuckDB's bindings report leaks there)."""
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "gainrl_ops.cli", "status"], capture_output=True, text=True,
                          env={**os.environ, "GAINRL_HOME": str(store)}, check=False)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith(f"gainrl store: {store}")


def test_a_second_status_opens_no_database_until_something_is_written(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gainrl_ops.store.status as status_module

    first = store_status(store)

    def no_database(*args, **kwargs):
        raise AssertionError("status opened the catalog although nothing had changed")

    monkeypatch.setattr(status_module, "connect_readonly", no_database)
    assert store_status(store) == first

    monkeypatch.undo()
    # A new evaluation replaces the unreadable one: the next status reads the catalog again.
    layout = Layout(store)
    evaluation = [{"checkpoint": CK_TUNED, "id": "e0", "answer": "1", "completion": "1", "predicted": "1", "correct": True}]
    write_parquet_atomic(pa.Table.from_pylist(evaluation, schema=registry.arrow_schema(registry.EVALUATION)),
                         layout.evaluation(DATASET, VERSION, CK_TUNED))
    after = store_status(store)
    tuned = next(c for c in after.checkpoints if c.fingerprint == CK_TUNED)
    assert (tuned.evaluated, tuned.accuracy, after.problems) == (1, 1.0, [])

    layout.status_cache.write_text("{not json")  # damaged: read again, not trusted
    assert store_status(store) == after
