"""The checkpoint store: a folder of model checkpoints, each known by its content fingerprint.

Each entry is a sub-folder holding `gainrl_checkpoint.json`. The weights either live in
the entry itself (trainers write them there) or elsewhere (a hub id or a user's folder,
registered by reference, not copied). A folder dropped in by hand without the JSON is
discovered once its files have stopped changing, so a copy in progress is never scored.
The `CheckpointStore` protocol is all the pipeline uses, so an object-store backend can
replace the local one.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

from gainrl_ops.core.storage import write_text_atomic
from gainrl_ops.scoring.models import checkpoint_fingerprint

RECORD_FILE = "gainrl_checkpoint.json"
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

    def register(self, path: str, name: str, source: str, parent: str | None = None, parameters: int | None = None) -> CheckpointRecord: ...


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


@dataclass(frozen=True)
class LocalCheckpointStore:
    """A checkpoint store in a local folder.

    settle_seconds: how long a hand-copied folder must be unchanged before it is taken.
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

    def _settled(self, folder: Path) -> bool:
        files = [p for p in folder.rglob("*") if p.is_file()]
        has_weights = any(folder.glob(pattern) for pattern in _WEIGHTS) and (folder / "config.json").exists()
        newest = max((p.stat().st_mtime for p in files), default=0.0)
        return has_weights and time.time() - newest >= self.settle_seconds

    def _recorded(self) -> list[CheckpointRecord]:
        return [
            CheckpointRecord(**json.loads((folder / RECORD_FILE).read_text()))
            for folder in self._entries()
            if (folder / RECORD_FILE).exists()
        ]

    def records(self) -> list[CheckpointRecord]:
        """Every checkpoint in the store, oldest first; settled hand-copied folders are registered."""
        out = self._recorded()
        for folder in self._entries():
            if not (folder / RECORD_FILE).exists() and self._settled(folder):
                out.append(self._write(folder, str(folder), folder.name, "copied into the store", None))
        return sorted(out, key=lambda r: (r.registered_at, r.name))

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
