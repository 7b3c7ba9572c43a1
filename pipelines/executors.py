"""Where steps run, chosen per run in the run config: in subprocesses of the run (the default),
in the run's own process, or on Celery workers on other machines; and the Kubernetes settings of
the steps that run a model, read by `dagster_k8s.k8s_job_executor` when a deployment uses it.

```yaml
execution:
  config:
    celery: {broker: "redis://broker-host:6379/0", backend: "redis://broker-host:6379/1"}
```
"""

from collections.abc import Mapping, Sequence

import dagster as dg

# dagster_celery.executor imports no celery module (measured: 0.1 s over dagster), so the
# definitions load as fast as without it; celery itself is imported when a run uses it.
from dagster_celery.executor import celery_executor

# The default executor's choices, with the same names and config, so existing run configs
# (`multiprocess: {max_concurrent: 2}`, `in_process: {}`) keep their meaning.
_LOCAL_CHOICES = dict(dg.multi_or_in_process_executor.config_schema.config_type.fields)


def _requirements(config: Mapping[str, object]) -> Sequence[dg.ExecutorRequirement]:
    # Steps in other processes reload the job from its code location and share the instance.
    return [] if "in_process" in config else dg.multiple_process_executor_requirements()


@dg.executor(
    name="gainrl",
    config_schema=dg.Field(
        dg.Selector({**_LOCAL_CHOICES, "celery": dg.Field(celery_executor.config_schema.config_type)}),
        default_value={"multiprocess": {}},
        description="multiprocess (default), in_process, or celery: one task per step on the workers listening to the broker.",
    ),
    requirements=_requirements,
)
def step_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    """Dagster's default executor (multiprocess or in_process), or dagster-celery's when the run
    config selects `celery`."""
    if "celery" in init_context.executor_config:
        celery = dg.InitExecutorContext(
            job=init_context.job,
            executor_def=init_context.executor_def,
            executor_config=init_context.executor_config["celery"],
            instance=init_context.instance,
        )
        return celery_executor.executor_creation_fn(celery)
    return dg.multi_or_in_process_executor.executor_creation_fn(init_context)


# One pod per step under `dagster_k8s.k8s_job_executor`: a GPU for every step that runs the model
# (requests equal limits for GPUs in Kubernetes). Keys and casing as dagster-k8s reads them.
MODEL_STEP_TAGS = {
    "dagster-k8s/config": {
        "container_config": {
            "resources": {
                "requests": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"},
                "limits": {"memory": "32Gi", "nvidia.com/gpu": "1"},
            }
        }
    }
}
