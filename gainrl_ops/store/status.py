"""What is in a storage root: datasets, checkpoints, training runs, and what to run next.

`store_status(root)` reads the catalog's views in one statement on a read-only connection, plus the few
files no view covers (ranking snapshots, report plots, exports, resume points), and returns a
`StoreStatus`; `render(status)` is the screen `gainrl status` prints and `status.to_json()` the
object `gainrl status --json` prints. It imports neither a dataframe nor a model library, and
keeps the catalog's rows for the refresh they were read after (`cached_catalog_rows`), so it
costs about what a bare DuckDB query does.

The JSON object's keys:

- `root`: the storage root.
- `datasets`: one object per dataset name: `name`, `version` (the content version it serves:
  what SQL, training and exports read; null while it serves none), `loaded_version` (the
  version loaded last, when it is not the served one, else null), `prompts` and `rejects` (of
  the served version), `file` and `loaded_at` (where the served version came from),
  `older_versions` (every other stored version: `version`, `prompts`, `loaded_at`).
- `checkpoints`: one object per checkpoint and dataset it was used on, registered checkpoints in
  registration order, then checkpoints scored without registration: `fingerprint`, `name`,
  `registered_at`, `parent`, `dataset` (null for a checkpoint used on none), `scored` (prompts
  of the served version scored), `ranked` (its ranking snapshot exists), `reported` (report
  plots exist), `evaluated` (held-out problems answered) and `accuracy` (their mean
  correctness, null when not evaluated), `diagnosed` (prompts measured by the signal
  diagnostics), `exported` (formats exported into the store: verl, hf, jsonl, pt).
- `runs`: one object per training run: `name`, `sampler`, `epochs_done`, `rollout_accuracy` (of
  the last epoch), `held_out_accuracy` (the last one measured), `mu` (the window's centre for
  the next epoch; null for uniform), `checkpoints` (saved so far), `finished`, `resumable`
  (a complete resume point exists: rerunning the run with the same settings continues after
  `epochs_done`; a run in progress has one too).
- `problems`: files the catalog left out because they could not be read (`view`, `path`, `error`).
- `next`: the one command that makes sense now (`command`) and why (`why`).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from gainrl_ops.core import layout as tree
from gainrl_ops.core.keys import ScoresKey
from gainrl_ops.core.layout import Layout
from gainrl_ops.core.storage import write_text_atomic
from gainrl_ops.core.tables import format_table
from gainrl_ops.curriculum.catalog import PROBLEMS_SQL, connect_readonly, refresh_if_changed
from gainrl_ops.training.resume import latest_resume_point


@dataclass(frozen=True)
class OlderVersion:
    version: str
    prompts: int
    loaded_at: str | None


@dataclass(frozen=True)
class DatasetStatus:
    name: str
    version: str | None
    loaded_version: str | None
    prompts: int
    rejects: int
    file: str | None
    loaded_at: str | None
    older_versions: list[OlderVersion]


@dataclass(frozen=True)
class CheckpointStatus:
    fingerprint: str
    name: str | None
    registered_at: str | None
    parent: str | None
    path: str | None
    dataset: str | None
    scored: int = 0
    ranked: bool = False
    reported: bool = False
    evaluated: int = 0
    accuracy: float | None = None
    diagnosed: int = 0
    exported: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RunStatus:
    name: str
    sampler: str | None
    epochs_done: int
    rollout_accuracy: float | None
    held_out_accuracy: float | None
    mu: float | None
    checkpoints: int
    finished: bool
    resumable: bool


@dataclass(frozen=True)
class NextStep:
    command: str
    why: str


@dataclass(frozen=True)
class StoreStatus:
    root: str
    datasets: list[DatasetStatus]
    checkpoints: list[CheckpointStatus]
    runs: list[RunStatus]
    problems: list[dict[str, str]]
    next: NextStep

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def export_format(name: str) -> str:
    """The format of an entry of an export folder (`curriculum.verl.parquet` -> verl, `hf` -> hf;
    a sidecar `curriculum.pt.gainrl.json` -> pt)."""
    return name.removeprefix("curriculum.").split(".")[0]


# What the screen needs from the catalog: a query per part, with the order its rows are listed in.
# They run as one statement: each statement pays its own planning and its own reads of the
# dataset labels that every view filters on (about 5 ms each), and status should cost what one
# query does.
QUERIES: dict[str, tuple[str, str]] = {
    "versions": ("SELECT dataset, version, prompts, served, loaded, file, CAST(loaded_at AS VARCHAR) AS loaded_at "
                 "FROM dataset_versions", "dataset, loaded_at, version"),
    "rejects": ("SELECT dataset, count(*) AS n FROM rejects GROUP BY ALL", "dataset"),
    "registered": ("SELECT fingerprint, name, path, CAST(registered_at AS VARCHAR) AS registered_at, parent FROM checkpoints",
                   "registered_at, name"),
    "scored": ("SELECT checkpoint, any_value(model) AS model, dataset, dataset_version, prompt_fingerprint, count(*) AS n "
               "FROM scores GROUP BY ALL", "checkpoint, dataset, dataset_version, prompt_fingerprint"),
    "evaluated": ("SELECT checkpoint, dataset, count(*) AS n, avg(correct::INT) AS accuracy FROM evaluations GROUP BY ALL",
                  "checkpoint, dataset"),
    "diagnosed": ("SELECT checkpoint, dataset, count(*) AS n FROM diagnostics GROUP BY ALL", "checkpoint, dataset"),
    "epochs": ("SELECT run, epoch, sampler, accuracy, held_out_accuracy, mu_next, checkpoint_path FROM epochs", "run, epoch"),
    "problems": (PROBLEMS_SQL, '"view", path'),
}


def read_catalog(con: duckdb.DuckDBPyConnection) -> dict[str, list[dict[str, Any]]]:
    """The rows of each of `QUERIES`, in its order, read in one statement."""
    parts = ", ".join(
        f"(SELECT coalesce(list(q ORDER BY {', '.join(f'q.{key}' for key in order.split(', '))}), []) FROM ({sql}) AS q) AS {name}"
        for name, (sql, order) in QUERIES.items()
    )
    # `execute`, not `sql`: a relation binds the statement once more before it runs (10 ms here).
    result = con.execute(f"SELECT {parts}")
    return dict(zip(QUERIES, result.fetchall()[0]))


def _published(folder: Path) -> list[str]:
    """Entries of a folder that are not staging or temporary (names starting with "." or "_")."""
    try:
        return sorted(name for name in os.listdir(folder) if not name.startswith((".", "_")))
    except (FileNotFoundError, NotADirectoryError):
        return []


def cached_catalog_rows(layout: Layout) -> dict[str, list[dict[str, Any]]]:
    """`read_catalog`'s rows, kept in `gainrl.duckdb.status.json` for the catalog refresh they
    were read after (its state file digests every file the views read: size, mtime, inode) and
    for these `QUERIES`: until something is written, `gainrl status` opens no database."""
    try:
        key = [layout.catalog_state.read_text(), json.dumps(QUERIES)]  # strings: they come back from JSON equal
    except OSError:
        key = None  # no catalog yet: the connection builds it
    if key is not None:
        try:
            cached = json.loads(layout.status_cache.read_text())
            if cached["key"] == key:
                return cached["rows"]
        except (OSError, ValueError, KeyError, TypeError):
            pass  # none yet, or one this code did not write
    # Not sandboxed: the statement is ours, not a user's, and the sandbox's checks cost every file read.
    with connect_readonly(layout.root, sandbox=False) as con:
        rows = read_catalog(con)
    if key is not None:
        # A refresh that ran since `key` was read gives the next status another key, so these rows
        # are never kept under a refresh they were not read after.
        with contextlib.suppress(OSError):  # a store this user cannot write still has a status
            write_text_atomic(json.dumps({"key": key, "rows": rows}), layout.status_cache)
    return rows


def _datasets(catalog: dict[str, list[dict[str, Any]]]) -> list[DatasetStatus]:
    versions = catalog["versions"]
    rejects = {r["dataset"]: r["n"] for r in catalog["rejects"]}
    out = []
    for name in dict.fromkeys(v["dataset"] for v in versions):
        mine = [v for v in versions if v["dataset"] == name]
        served = next((v for v in mine if v["served"]), None)
        loaded = next((v for v in mine if v["loaded"] and not v["served"]), None)
        out.append(DatasetStatus(
            name=name,
            version=served["version"] if served else None,
            loaded_version=loaded["version"] if loaded else None,
            prompts=served["prompts"] if served else 0,
            rejects=rejects.get(name, 0),
            file=served["file"] if served else None,
            loaded_at=served["loaded_at"] if served else None,
            older_versions=[OlderVersion(v["version"], v["prompts"], v["loaded_at"]) for v in mine if v is not served and v is not loaded],
        ))
    return out


def _checkpoints(catalog: dict[str, list[dict[str, Any]]], layout: Layout, datasets: list[DatasetStatus]) -> list[CheckpointStatus]:
    registered, scored = catalog["registered"], catalog["scored"]
    evaluated = {(r["checkpoint"], r["dataset"]): r for r in catalog["evaluated"]}
    diagnosed = {(r["checkpoint"], r["dataset"]): r["n"] for r in catalog["diagnosed"]}
    served = {d.name: d.version for d in datasets if d.version}

    # Each checkpoint's datasets, in the order a user meets them: what it scored, evaluated, diagnosed.
    used: dict[str, dict[str, None]] = {}
    for checkpoint, dataset in [*((r["checkpoint"], r["dataset"]) for r in scored), *evaluated, *diagnosed]:
        used.setdefault(checkpoint, {})[dataset] = None
    records = {r["fingerprint"]: r for r in registered}
    models = {r["checkpoint"]: r["model"] for r in scored}
    order = [*records, *sorted(set(used) - set(records))]

    out = []
    for fingerprint in order:
        record = records.get(fingerprint, {})
        for dataset in used.get(fingerprint) or [None]:
            mine = [r for r in scored if r["checkpoint"] == fingerprint and r["dataset"] == dataset]  # one row per prompt fingerprint
            keys = [ScoresKey(dataset, r["dataset_version"], r["prompt_fingerprint"], fingerprint) for r in mine]
            evaluation = evaluated.get((fingerprint, dataset), {})
            out.append(CheckpointStatus(
                fingerprint=fingerprint,
                name=record.get("name") or models.get(fingerprint),
                registered_at=record.get("registered_at"),
                parent=record.get("parent"),
                path=record.get("path"),
                dataset=dataset,
                scored=max((r["n"] for r in mine), default=0),
                ranked=any(layout.ranking(key).exists() for key in keys),
                reported=any(glob.glob(os.path.join(glob.escape(str(layout.report_dir(key))), "*.png")) for key in keys),
                evaluated=evaluation.get("n", 0),
                accuracy=evaluation.get("accuracy"),
                diagnosed=diagnosed.get((fingerprint, dataset), 0),
                exported=sorted({export_format(name) for name in _published(layout.export_dir(dataset, served[dataset], fingerprint))})
                if dataset in served else [],
            ))
    return out


def _run_row(name: str, epochs: list[dict[str, Any]], finished: bool, resumable: bool) -> RunStatus:
    last = epochs[-1]
    held_out = [e["held_out_accuracy"] for e in epochs if e.get("held_out_accuracy") is not None]
    return RunStatus(
        name=name,
        sampler=last.get("sampler"),
        epochs_done=len(epochs),
        rollout_accuracy=last.get("accuracy"),
        held_out_accuracy=held_out[-1] if held_out else None,
        mu=last.get("mu_next"),
        checkpoints=sum(1 for e in epochs if e.get("checkpoint_path")),
        finished=finished,
        resumable=resumable,
    )


def _runs(catalog: dict[str, list[dict[str, Any]]], layout: Layout) -> list[RunStatus]:
    finished: dict[str, list[dict[str, Any]]] = {}
    for row in catalog["epochs"]:
        finished.setdefault(row["run"], []).append(row)
    # A run that was cut short has no epoch table yet, only resume points (TRL's checkpoint
    # folders), each with the epoch rows so far; a rerun of a finished run has both.
    pattern = re.compile(tree.RUN_RESUME.regex("run"))
    cut_short = sorted({m.group(1) for path in glob.glob(layout.glob(tree.RUN_RESUME)) if (m := pattern.search(path))})
    out = {name: _run_row(name, epochs, finished=True, resumable=False) for name, epochs in finished.items()}
    for name in cut_short:
        point = latest_resume_point(layout.run_resume(name))
        if point is not None and point.state.get("epochs"):
            out[name] = _run_row(name, point.state["epochs"], finished=False, resumable=True)
    return [out[name] for name in sorted(out)]


def _score_command(dataset: DatasetStatus | None, checkpoint: CheckpointStatus | None = None) -> str:
    data = f"--data {dataset.file} --name {dataset.name}" if dataset and dataset.file else "--data FILE"
    model = f" --model {checkpoint.path}" if checkpoint and checkpoint.path else ""
    return f"gainrl score {data}{model}"


def next_step(datasets: list[DatasetStatus], checkpoints: list[CheckpointStatus], runs: list[RunStatus]) -> NextStep:
    """The one command that makes sense now, first match wins: load a dataset; score a version
    that was loaded but not scored; resume a run that was cut short; score a registered
    checkpoint that has not scored the served dataset; train; export."""
    if not datasets:
        return NextStep(
            "make demo",
            "the store is empty. `make demo` runs the whole loop on the embedded model (a few minutes); or load and "
            "score your own dataset: gainrl score --data FILE --model MODEL",
        )
    for dataset in datasets:
        if dataset.loaded_version:
            return NextStep(
                _score_command(dataset),
                f"version {dataset.loaded_version} of {dataset.name} was loaded but has no scores, so {dataset.name} still serves "
                f"{dataset.version or 'nothing'}; scoring it makes it the served version",
            )
    scored = {c.dataset for c in checkpoints if c.scored}
    for dataset in datasets:
        if dataset.name not in scored:
            base = next((c for c in checkpoints if c.path and c.parent is None), None)
            return NextStep(_score_command(dataset, base), f"{dataset.name} has no scores yet: score it to rank its prompts")
    resumable = [run for run in runs if run.resumable]
    if resumable:
        run = resumable[0]
        return NextStep(
            "make ui",
            f"run {run.name} stopped after epoch {run.epochs_done} (unless it is running now): materialize training_run, "
            f"partition {run.name}, with the same settings to resume it",
        )
    for checkpoint in checkpoints:
        if checkpoint.path and not checkpoint.scored:
            dataset = datasets[0]
            return NextStep(
                _score_command(dataset, checkpoint),
                f"checkpoint {checkpoint.name} has not scored {dataset.name}; or run `make ui`, where the new-checkpoint sensor "
                "scores, ranks, reports and evaluates it (rescore_checkpoint)",
            )
    dataset = datasets[0]
    export = f"gainrl export --dataset {dataset.name} --format verl --out {dataset.name}_curriculum.parquet"
    if not runs:
        return NextStep(
            "make ui",
            f"{dataset.name} is scored but nothing is trained: launch the train job on a run of data/training_runs.yaml; "
            f"or take the curriculum to your own trainer: {export}",
        )
    return NextStep(export, "every checkpoint is scored: export the latest one's curriculum for your trainer (or compare "
                            "runs: gainrl sql \"SELECT * FROM epochs ORDER BY run, epoch\")")


def store_status(root: Path, refresh: bool = True) -> StoreStatus:
    """What is stored under `root`; with `refresh`, the catalog is refreshed first if anything
    it reads has changed (as `gainrl sql` does)."""
    layout = Layout(Path(root).resolve())
    if refresh:
        refresh_if_changed(layout.root)
    catalog = cached_catalog_rows(layout)
    datasets = _datasets(catalog)
    checkpoints = _checkpoints(catalog, layout, datasets)
    runs = _runs(catalog, layout)
    return StoreStatus(str(layout.root), datasets, checkpoints, runs, catalog["problems"], next_step(datasets, checkpoints, runs))


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _yes(flag: bool) -> str:
    return "yes" if flag else "-"


def render(status: StoreStatus) -> str:
    """The screen `gainrl status` prints."""
    lines = [f"gainrl store: {status.root}", ""]
    if not (status.datasets or status.checkpoints or status.runs or status.problems):
        return "\n".join([f"gainrl store: {status.root} (empty)", "", f"Next: {status.next.command}", f"  {status.next.why}"])
    if status.datasets:
        lines += ["Datasets", format_table(
            ["dataset", "serves version", "prompts", "rejects", "loaded, not served", "older versions", "from"],
            None,
            [(d.name, d.version or "-", d.prompts, d.rejects, d.loaded_version or "-", len(d.older_versions), d.file or "-")
             for d in status.datasets],
        ), ""]
    else:
        lines += ["Datasets: none", ""]
    if status.checkpoints:
        lines += ["Checkpoints (registration order)", format_table(
            ["checkpoint", "fingerprint", "dataset", "scored", "ranked", "reported", "evaluated", "accuracy", "diagnosed", "exported"],
            None,
            [(c.name or "-", c.fingerprint, c.dataset or "-", c.scored, _yes(c.ranked), _yes(c.reported), c.evaluated,
              _number(c.accuracy), c.diagnosed, ",".join(c.exported) or "-")
             for c in status.checkpoints],
        ), ""]
    else:
        lines += ["Checkpoints: none", ""]
    if status.runs:
        lines += ["Training runs", format_table(
            ["run", "sampler", "epochs", "rollout acc.", "held-out acc.", "mu", "checkpoints", "state"],
            None,
            [(r.name, r.sampler or "-", r.epochs_done, _number(r.rollout_accuracy), _number(r.held_out_accuracy), _number(r.mu, 1),
              r.checkpoints, "finished" if r.finished else "resumable" if r.resumable else "unfinished")
             for r in status.runs],
        ), ""]
    else:
        lines += ["Training runs: none", ""]
    if status.problems:
        lines += [f"Left out of the catalog ({len(status.problems)} files):",
                  *(f"  {p['path']} ({p['view']}): {p['error']}" for p in status.problems), ""]
    else:
        lines += ["Catalog problems: none", ""]
    lines += [f"Next: {status.next.command}", f"  {status.next.why}"]
    return "\n".join(lines)
