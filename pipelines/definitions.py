"""The Definitions that `dagster dev -w workspace.yaml` serves: every domain, the resources, and the
executor every job runs with (multiprocess unless the run config picks in_process or celery)."""

import dagster as dg

from .defs import curriculum, diagnostics, difficulty, training
from .executors import step_executor
from .resources import default_resources

defs = dg.Definitions.merge(
    curriculum.defs, training.defs, diagnostics.defs, difficulty.defs, dg.Definitions(resources=default_resources(), executor=step_executor)
)
