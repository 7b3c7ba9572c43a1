"""Content fingerprints: short, stable hex digests that key every artifact."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

DIGEST_CHARS = 16
_CHUNK = 1 << 20


def fingerprint_json(obj: Any) -> str:
    """Digest of a JSON-serialisable object, independent of dict key order."""
    payload = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(payload.encode(), digest_size=32).hexdigest()[:DIGEST_CHARS]


def fingerprint_files(paths: list[Path], root: Path | None = None) -> str:
    """Digest of the names (relative to `root`) and bytes of `paths`, in sorted order."""
    h = hashlib.blake2b(digest_size=32)
    for path in sorted(Path(p) for p in paths):
        name = str(path.relative_to(root)) if root else path.name
        h.update(name.encode() + b"\0")
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()[:DIGEST_CHARS]


def fingerprint_folder(root: Path, patterns: tuple[str, ...] = ("*",)) -> str:
    """Digest of the regular files directly in `root` that match one of `patterns`."""
    root = Path(root)
    files = {p for pattern in patterns for p in root.glob(pattern) if p.is_file()}
    if not files:
        raise FileNotFoundError(f"{root}: no files matching {patterns} to fingerprint")
    return fingerprint_files(sorted(files), root=root)
