"""Resume points of a training run: what a killed run restarts from.

After every epoch the trainer saves TRL's checkpoint folder (`checkpoint-<step>`: weights,
optimizer, scheduler, RNG states, trainer state) under the run's resume folder, and then,
atomically inside it, `gainrl_resume.json`: the sampler state (mu, history, RNG) and the
epoch, selection and rollout rows so far. The JSON is written last, so a folder without it is a save that was cut
short and never counts. TRL keeps the last two folders, so a kill during a save still
leaves the previous complete one.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gainrl_ops.core.fingerprint import fingerprint_json
from gainrl_ops.core.storage import write_text_atomic

if TYPE_CHECKING:  # `gainrl status` reads resume points without the samplers' numpy
    from gainrl_ops.training.config import TrainingRunConfig

STATE_FILE = "gainrl_resume.json"
_CHECKPOINT = re.compile(r"checkpoint-(\d+)")


def resume_key(run: TrainingRunConfig, model_path: str, ids: Sequence[str], pass_rates: Sequence[float] | None = None) -> str:
    """What a resume point must have been made from: the same run settings, starting
    checkpoint, prompts in the same order and, where given, the same initial pass rates.
    Anything else starts over."""
    inputs = {"run": asdict(run), "model": str(model_path), "ids": list(ids)}
    if pass_rates is not None:
        inputs["pass_rates"] = [None if math.isnan(p) else p for p in pass_rates]
    return fingerprint_json(inputs)


@dataclass(frozen=True)
class ResumePoint:
    folder: Path  # TRL's checkpoint folder, for `trainer.train(resume_from_checkpoint=...)`
    state: dict[str, Any]  # what `write_resume_state` wrote beside it

    @property
    def epochs_done(self) -> int:
        return len(self.state["epochs"])


def write_resume_state(folder: Path, key: str, state: dict[str, Any]) -> Path:
    return write_text_atomic(json.dumps({"key": key, **state}, default=float), Path(folder) / STATE_FILE)


def _saved(directory: Path) -> list[tuple[int, Path]]:
    if not directory.is_dir():
        return []
    found = ((_CHECKPOINT.fullmatch(p.name), p) for p in directory.iterdir() if p.is_dir())
    return sorted((int(m.group(1)), p) for m, p in found if m)


def _complete(directory: Path) -> Iterator[ResumePoint]:
    """The complete resume points in `directory`, latest first."""
    for _, folder in reversed(_saved(Path(directory))):
        try:
            state = json.loads((folder / STATE_FILE).read_text())
        except (OSError, ValueError):
            continue  # a save that was cut short, or not ours
        yield ResumePoint(folder, state)


def find_resume_point(directory: Path, key: str) -> ResumePoint | None:
    """The latest complete resume point in `directory` made with `key`, if any."""
    return next((point for point in _complete(directory) if point.state.get("key") == key), None)


def latest_resume_point(directory: Path) -> ResumePoint | None:
    """The latest complete resume point in `directory` whatever settings made it: the run was cut
    short there, and rerunning it with the same settings resumes from it."""
    return next(_complete(directory), None)


def prepare_resume(directory: Path, key: str) -> ResumePoint | None:
    """The point to resume from; removes what cannot be resumed from (other settings, saves
    cut short after the point), so TRL's rotation of old checkpoints sees only valid ones."""
    directory = Path(directory)
    point = find_resume_point(directory, key)
    if point is None:
        shutil.rmtree(directory, ignore_errors=True)
        return None
    step = int(_CHECKPOINT.fullmatch(point.folder.name).group(1))
    for later, folder in _saved(directory):
        if later > step:
            shutil.rmtree(folder, ignore_errors=True)
    return point
