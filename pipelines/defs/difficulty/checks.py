"""Asset checks on pass rates: coverage of the sample, and values consistent with their counts."""

from pathlib import Path

import dagster as dg

from gainrl_ops.difficulty import checks
from gainrl_ops.scoring.target import CheckpointTarget

from ... import partitions
from ...resources import TargetsResource
from ..curriculum.checks import check_result
from .assets import pass_rates


def _pass_rates_path(context: dg.AssetCheckExecutionContext, targets: TargetsResource) -> tuple[CheckpointTarget, Path]:
    target = targets.resolve(context, loaded=True)
    return target, target.layout.pass_rates(target.key)


@dg.asset_check(asset=pass_rates, partitions_def=partitions.checkpoints, blocking=True)
def every_sampled_prompt_once(context: dg.AssetCheckExecutionContext, targets: TargetsResource) -> dg.AssetCheckResult:
    """One row per sampled prompt of the dataset version, as many as were asked for."""
    target, path = _pass_rates_path(context, targets)
    return check_result(checks.every_sampled_prompt_once(target.prompts, path))


@dg.asset_check(asset=pass_rates, partitions_def=partitions.checkpoints)
def pass_rates_consistent(context: dg.AssetCheckExecutionContext, targets: TargetsResource) -> dg.AssetCheckResult:
    """pass_rate = n_correct / k in [0, 1], learnability = p(1 - p), ranks a permutation."""
    return check_result(checks.pass_rates_consistent(_pass_rates_path(context, targets)[1]))
