"""Which content version a dataset name means: the one loaded last and the one served.

A load (raw_dataset, or the first step of `gainrl score`) writes a new version's files and
moves the *loaded* label. What SQL's views, training and exports read is the *served* label.
One rule moves it, for the CLI and the assets alike (`settle`):

    A name serves its loaded version once that version has published scores, or when the
    version it serves has none (there is nothing to keep). Otherwise it keeps serving the
    last version whose scores were published.

So a new version whose scores are missing or failed never takes away the curriculum that is
served; publishing its first checkpoint's scores makes it the served one. Each version keeps
its own provenance (source file, load time, rows read) in a file beside its prompts.
"""

from __future__ import annotations

import contextlib
import glob
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from gainrl_ops.core import layout as tree
from gainrl_ops.core.layout import Layout, safe_name
from gainrl_ops.core.storage import restored_on_error, write_text_atomic


@dataclass(frozen=True)
class DatasetLabel:
    """One content version of a dataset name, loaded from `file` at `loaded_at` (its provenance)."""

    dataset: str
    version: str
    file: str
    rows: int
    loaded_at: str
    rows_read: int = 0  # rows in the input file, rejected and duplicate ones included


def _pointer(path: Path) -> str | None:
    """The version a label file names, None if there is no label yet."""
    try:
        return json.loads(path.read_text())["version"]
    except FileNotFoundError:
        return None


def _point(path: Path, dataset: str, version: str) -> None:
    write_text_atomic(json.dumps({"dataset": dataset, "version": version}), path)


def loaded_version(layout: Layout, dataset: str) -> str | None:
    """The version the name's last load made (None if it was never loaded)."""
    return _pointer(layout.loaded_label(safe_name(dataset, "dataset name")))


def require_loaded(layout: Layout, dataset: str) -> str:
    """The version the name's last load made; a one-line error when it was never loaded."""
    version = loaded_version(layout, dataset)
    if version is None:
        raise FileNotFoundError(f"{layout.loaded_label(dataset)}: dataset {dataset!r} was never loaded; materialize raw_dataset first")
    return version


def served_version(layout: Layout, dataset: str) -> str | None:
    """The version the name serves (None if it serves none yet)."""
    return _pointer(layout.dataset_label(safe_name(dataset, "dataset name")))


def require_served(layout: Layout, dataset: str) -> str:
    """The version the name serves; a one-line error when it serves none yet."""
    version = served_version(layout, dataset)
    if version is None:
        raise FileNotFoundError(
            f"{layout.dataset_label(dataset)}: dataset {dataset!r} serves no version yet; materialize raw_dataset (or run gainrl score) first"
        )
    return version


def provenance(layout: Layout, dataset: str, version: str) -> DatasetLabel:
    """Where a version of the dataset came from."""
    path = layout.provenance(safe_name(dataset, "dataset name"), version)
    if not path.exists():
        raise FileNotFoundError(f"{path}: version {version} of dataset {dataset!r} has no provenance; materialize raw_dataset (or run gainrl score) again")
    return DatasetLabel(**json.loads(path.read_text()))


def mark_loaded(layout: Layout, label: DatasetLabel) -> None:
    """Record a complete version's provenance beside its prompts, then make it the loaded one."""
    write_text_atomic(json.dumps(asdict(label), indent=2), layout.provenance(label.dataset, label.version))
    _point(layout.loaded_label(label.dataset), label.dataset, label.version)


def has_published_scores(layout: Layout, dataset: str, version: str) -> bool:
    """Whether any checkpoint's scores of the version are published (staging does not count)."""
    return bool(glob.glob(layout.glob(tree.SCORES, dataset=dataset, version=version)))


def settle(layout: Layout, dataset: str) -> str | None:
    """Apply the serving rule (module docstring) and return the version the name serves now.
    Call it after a load and after a publish; moving the label is the commit of either."""
    loaded, served = loaded_version(layout, dataset), served_version(layout, dataset)
    if loaded is None or loaded == served:
        return served
    if has_published_scores(layout, dataset, loaded) or served is None or not has_published_scores(layout, dataset, served):
        _point(layout.dataset_label(dataset), dataset, loaded)
        return loaded
    return served


@contextlib.contextmanager
def labels_restored_on_error(layout: Layout, dataset: str) -> Iterator[None]:
    """Make a command over a dataset name a transaction: if the block fails, both labels are put
    back as they were, so every view reads what it read before (new versions' files stay on disk,
    unserved, for a retry to reuse)."""
    with restored_on_error(layout.loaded_label(dataset)), restored_on_error(layout.dataset_label(dataset)):
        yield


def current_label(layout: Layout, dataset: str) -> DatasetLabel:
    """The provenance of the version the name serves (what SQL, training and exports read)."""
    return provenance(layout, dataset, require_served(layout, dataset))
