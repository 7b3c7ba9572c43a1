"""What a data check returns: whether it passed, and the numbers that show why."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    details: dict[str, int | float | str] = field(default_factory=dict)
