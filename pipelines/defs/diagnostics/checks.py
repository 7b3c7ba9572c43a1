"""Asset check on the signal diagnostics: warns when the curriculum's premise fails for a checkpoint."""

import dagster as dg

from gainrl_ops.diagnostics.checks import angle_predicts_gradient as predicts

from ... import partitions
from ...resources import TargetsResource
from ..curriculum.checks import check_result
from .assets import signal_diagnostics


@dg.asset_check(asset=signal_diagnostics, partitions_def=partitions.checkpoints)
def angle_predicts_gradient(context: dg.AssetCheckExecutionContext, targets: TargetsResource) -> dg.AssetCheckResult:
    """Warns when the angle score does not predict gradient norm beyond prompt length for this
    checkpoint, i.e. when the curriculum's premise is not borne out on this model and data."""
    summary = targets.resolve(context).diagnostics_stem.with_suffix(".json")
    return check_result(predicts(summary), severity=dg.AssetCheckSeverity.WARN)
