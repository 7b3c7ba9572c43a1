"""Wall-clock seconds of a scoring command's phases (`gainrl score --profile FILE`, `make bench`).

Times are read with `time.time()` so that a parent process can place them against its own
clock: the seconds before `started_at` (interpreter start, module imports) are what the
parent sees from launching the command to that mark.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from gainrl_ops.core.storage import write_text_atomic

# The phases a whole scoring command is split into, in the order they run; the benchmark
# reports both sides in these.
PHASES = ("import", "load", "tokenize", "score", "write", "refresh")


@dataclass
class Phases:
    """Seconds per phase name (a phase entered twice adds up), and when timing started."""

    started_at: float = field(default_factory=time.time)
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.time()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.time() - started

    def write(self, path: Path) -> None:
        """The phases as JSON: {"started_at", "finished_at", "seconds": {phase: s}}."""
        report = {"started_at": self.started_at, "finished_at": time.time(), "seconds": self.seconds}
        write_text_atomic(json.dumps(report, indent=2), Path(path))
