"""The check on a signal diagnostic: does the angle score predict gradient norm beyond length?"""

from __future__ import annotations

import json
from pathlib import Path

from gainrl_ops.core.checks import CheckOutcome


def angle_predicts_gradient(summary: Path) -> CheckOutcome:
    """The signal diagnostic found the angle score predicting gradient norm beyond prompt length."""
    found = json.loads(Path(summary).read_text())
    partial = {f"partial_rho_{k}": v for k, v in found["partial_angle_given_length"].items() if v is not None}
    return CheckOutcome(bool(found["angle_predicts_gradient_beyond_length"]), {"verdict": found["verdict"], **partial})
