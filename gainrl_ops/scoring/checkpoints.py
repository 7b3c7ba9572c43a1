"""The checkpoint store: a folder of model checkpoints, each known by its content fingerprint.

Each entry is a sub-folder holding `gainrl_checkpoint.json`. The weights either live in
the entry itself (trainers write them there) or elsewhere (a hub id or a user's folder,
registered by reference, not copied). A folder dropped in by hand without the JSON is
registered by `discover` once its weights are complete and it has looked the same on two
looks `settle_seconds` apart, so a copy in progress is never scored.
The `CheckpointStore` protocol is all the pipeline uses, so an object-store backend can
replace the local one.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

from gainrl_ops.core.fingerprint import fingerprint_folder, fingerprint_json
from gainrl_ops.core.storage import write_text_atomic

log = logging.getLogger(__name__)
RECORD_FILE = "gainrl_checkpoint.json"
# Files that determine a checkpoint's outputs; optimizer states and logs are left out so a
# copy of the same weights gets the same fingerprint.
_WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.gguf", "config.json")
_WEIGHTS = ("*.safetensors", "*.bin")
_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class CheckpointRecord:
    """One checkpoint: `path` is what `from_pretrained` loads; `parent` the checkpoint it was trained from."""

    fingerprint: str
    name: str
    path: str
    registered_at: str
    source: str
    parameters: int | None = None
    parent: str | None = None


class CheckpointStore(Protocol):
    def records(self) -> list[CheckpointRecord]: ...

    def get(self, fingerprint: str) -> CheckpointRecord: ...

    def discover(self, arrivals: dict[str, dict[str, object]] | None = None, now: float | None = None) -> Discovery: ...

    def register(self, path: str, name: str, source: str, parent: str | None = None, parameters: int | None = None) -> CheckpointRecord: ...


def resolve_local(name_or_path: str) -> Path:
    """The local folder of a checkpoint: the path itself, or the cached snapshot of a hub id."""
    if not name_or_path:
        raise ValueError("empty model name or path")
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path.resolve()
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(name_or_path))


def checkpoint_fingerprint(name_or_path: str) -> str:
    """Content digest of a checkpoint's weights and config (not its name or location)."""
    return fingerprint_folder(resolve_local(name_or_path), _WEIGHT_PATTERNS)


def unregistered(path: str, name: str) -> CheckpointRecord:
    """A checkpoint scored outside the store (the CLI, the benchmarks): known by its content
    fingerprint, with `name` as its model name in score rows; nothing is written."""
    return CheckpointRecord(fingerprint=checkpoint_fingerprint(path), name=name, path=path, registered_at="", source=path)


def _count_parameters(path: Path) -> int | None:
    """Parameter count read from safetensors headers, without loading the weights."""
    from safetensors import safe_open

    files = sorted(path.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for file in files:
        with safe_open(file, "pt") as f:
            total += sum(math.prod(f.get_slice(key).get_shape()) for key in f.keys())
    return total


def _safetensors_problem(path: Path) -> str | None:
    """Why a .safetensors file is not complete (header unreadable, data cut short), or None."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            header_len = int.from_bytes(f.read(8), "little")
            if size < 8 or header_len > min(size - 8, 100 << 20):
                return f"{path.name}: truncated header"
            header = json.loads(f.read(header_len))
    except (OSError, ValueError) as error:
        return f"{path.name}: unreadable header ({error})"
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if size != 8 + header_len + end:
        return f"{path.name}: {size} bytes where its header needs {8 + header_len + end}"
    return None


def weights_problem(folder: Path) -> str | None:
    """Why `folder` is not (yet) a complete checkpoint, or None: config.json must parse, every
    shard an index names must be there, and every safetensors file must be whole."""
    try:
        json.loads((folder / "config.json").read_text())
    except FileNotFoundError:
        return "no config.json yet"
    except (OSError, ValueError) as error:
        return f"config.json unreadable ({error})"
    indexes = sorted(folder.glob("*.index.json"))
    files: set[Path] = set()
    for index in indexes:
        try:
            files |= {folder / name for name in json.loads(index.read_text())["weight_map"].values()}
        except (OSError, ValueError, KeyError) as error:
            return f"{index.name} unreadable ({error})"
    missing = sorted(f.name for f in files if not f.exists())
    if missing:
        return f"waiting for {len(missing)} of {len(files)} weight shards ({', '.join(missing[:3])})"
    files |= {p for pattern in _WEIGHTS for p in folder.glob(pattern)}
    if not files:
        return "no weights yet (*.safetensors or *.bin)"
    return next((problem for f in sorted(files) if f.suffix == ".safetensors" and (problem := _safetensors_problem(f))), None)


def _signature(folder: Path) -> str:
    """What changes while a folder is being written: every file's name, size and mtime."""
    stats = sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file())
    return fingerprint_json(stats)


@dataclass(frozen=True)
class Discovery:
    """One look at the folders copied into the store without a record.

    registered: checkpoints taken on this look.
    arrivals: folder name -> {"signature", "since"} for folders still being watched; pass it to
        the next look (the sensor keeps it in its cursor).
    problems: one line per folder that is incomplete or broken, retried on the next look.
    """

    registered: list[CheckpointRecord]
    arrivals: dict[str, dict[str, object]]
    problems: list[str]


@dataclass(frozen=True)
class LocalCheckpointStore:
    """A checkpoint store in a local folder.

    settle_seconds: a folder copied in by hand is taken only when its weights are complete and
        it looked the same (names, sizes, mtimes) on two looks at least this far apart; its
        mtimes alone prove nothing (`cp -p` and `rsync -a` keep old ones).
    """

    root: Path
    settle_seconds: float = 10.0

    def entry(self, name: str) -> Path:
        """The store folder for a checkpoint named `name`."""
        return self.root / _NAME.sub("-", name)

    def _entries(self) -> list[Path]:
        if not self.root.exists():
            return []
        return sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))

    def _recorded(self) -> list[CheckpointRecord]:
        records = []
        for folder in self._entries():
            if (folder / RECORD_FILE).exists():
                try:
                    records.append(CheckpointRecord(**json.loads((folder / RECORD_FILE).read_text())))
                except (OSError, ValueError, TypeError) as error:
                    log.warning("%s: unreadable checkpoint record, skipped (%s)", folder / RECORD_FILE, error)
        return records

    def records(self) -> list[CheckpointRecord]:
        """Every registered checkpoint in the store, oldest first."""
        return sorted(self._recorded(), key=lambda r: (r.registered_at, r.name))

    def discover(self, arrivals: dict[str, dict[str, object]] | None = None, now: float | None = None) -> Discovery:
        """Look at the folders without a record; register those whose weights are complete and
        that have not changed since a look at least `settle_seconds` before `now`. A broken
        folder is reported and looked at again next time; it never stops the others."""
        now = time.time() if now is None else now
        previous = arrivals or {}
        registered, watching, problems = [], {}, []
        for folder in self._entries():
            if (folder / RECORD_FILE).exists():
                continue
            try:
                signature = _signature(folder)
                problem = weights_problem(folder)
            except OSError as error:  # a file vanished between listing and stat: still moving
                signature, problem = "", f"changing ({error})"
            before = previous.get(folder.name, {})
            since = float(before["since"]) if before.get("signature") == signature else now
            if problem is None and signature and now - since >= self.settle_seconds and folder.name in previous:
                try:
                    registered.append(self._write(folder, str(folder), folder.name, "copied into the store", None))
                    continue
                except (OSError, ValueError) as error:
                    problem = f"cannot be registered ({error})"
            watching[folder.name] = {"signature": signature, "since": since}
            if problem is not None:
                problems.append(f"{folder}: {problem}")
        return Discovery(registered, watching, problems)

    def get(self, fingerprint: str) -> CheckpointRecord:
        for record in self.records():
            if record.fingerprint == fingerprint:
                return record
        raise KeyError(f"checkpoint {fingerprint} is not in the store at {self.root}")

    def register(self, path: str, name: str, source: str, parent: str | None = None, parameters: int | None = None) -> CheckpointRecord:
        """Record a checkpoint by reference; a checkpoint already in the store is not added twice."""
        fingerprint = checkpoint_fingerprint(path)
        for record in self._recorded():
            if record.fingerprint == fingerprint:
                return record
        folder = self.entry(name)
        folder.mkdir(parents=True, exist_ok=True)
        return self._write(folder, path, name, source, parent, fingerprint, parameters)

    def _write(
        self,
        folder: Path,
        path: str,
        name: str,
        source: str,
        parent: str | None,
        fingerprint: str | None = None,
        parameters: int | None = None,
    ) -> CheckpointRecord:
        local = Path(path)
        record = CheckpointRecord(
            fingerprint=fingerprint or checkpoint_fingerprint(path),
            name=name,
            path=str(local.resolve()) if local.exists() else path,
            registered_at=datetime.now(timezone.utc).isoformat(timespec="microseconds"),
            source=source,
            parameters=parameters if parameters is not None else (_count_parameters(local) if local.is_dir() else None),
            parent=parent,
        )
        write_text_atomic(json.dumps(asdict(record), indent=2), folder / RECORD_FILE)
        os.utime(folder)
        return record
