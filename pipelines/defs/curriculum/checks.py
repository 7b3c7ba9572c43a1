"""Asset checks on the curriculum: coverage, finiteness, spans and the ranking's shape."""

import dagster as dg

from gainrl_ops.core.checks import CheckOutcome
from gainrl_ops.curriculum import checks

from ... import partitions
from ...resources import TargetsResource
from .assets import angle_scores, curriculum, tokenized_shards


def check_result(outcome: CheckOutcome, severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=outcome.passed, severity=severity, metadata=outcome.details)


@dg.asset_check(asset=tokenized_shards, blocking=True)
def spans_not_empty(targets: TargetsResource) -> dg.AssetCheckResult:
    """Every prompt has a question of two or more tokens and, with a system prompt, a system span."""
    return check_result(checks.spans_not_empty(targets.shards().directory, expect_system=bool(targets.model.system_prompt)))


@dg.asset_check(asset=angle_scores, partitions_def=partitions.checkpoints, blocking=True)
def every_prompt_scored_once(context: dg.AssetCheckExecutionContext, targets: TargetsResource) -> dg.AssetCheckResult:
    """Every raw prompt id has exactly one score row for this checkpoint."""
    target = targets.resolve(context)
    return check_result(checks.every_prompt_scored_once(target.prompts, target.ranked_scores))


@dg.asset_check(asset=angle_scores, partitions_def=partitions.checkpoints)
def scores_are_finite(context: dg.AssetCheckExecutionContext, targets: TargetsResource) -> dg.AssetCheckResult:
    """No NaN or infinite c_intra, c_inter or angle_score."""
    return check_result(checks.scores_finite(targets.resolve(context).ranked_scores))


@dg.asset_check(asset=curriculum, partitions_def=partitions.checkpoints)
def rank_is_permutation(context: dg.AssetCheckExecutionContext, targets: TargetsResource) -> dg.AssetCheckResult:
    """Ranks are 1..n, each once, in decreasing angle score."""
    return check_result(checks.rank_is_permutation(targets.resolve(context).ranking))
