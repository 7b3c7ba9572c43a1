"""Where steps run: the executor every job gets (multiprocess unless the run config picks
in_process or celery), and the Kubernetes op tags of the steps that run a model."""

import importlib.util
import json
import re

import dagster as dg
import pytest
from dagster._config import process_config
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.executor.in_process import InProcessExecutor
from dagster._core.executor.multiprocess import MultiprocessExecutor
from dagster_celery.executor import CeleryExecutor

from pipelines.definitions import defs
from pipelines.executors import step_executor

REPO = defs.get_repository_def()
MODEL_STEPS = {"score_shard_step", "training_run", "evaluation", "signal_diagnostics", "pass_rates"}
K8S_TAG = "dagster-k8s/config"
# The keys dagster-k8s accepts in the tag (its user-defined k8s config), and a container's
# resource requirements as Kubernetes reads them.
K8S_CONFIG_KEYS = {"container_config", "pod_template_spec_metadata", "pod_spec_config", "job_config", "job_metadata", "job_spec_config", "merge_behavior"}
RESOURCE_KEYS = {"requests", "limits", "claims"}
QUANTITY = re.compile(r"^(?P<number>[0-9]+(?:\.[0-9]+)?)(?P<suffix>m|Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
SUFFIX = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


def _quantity(value: str) -> float:
    match = QUANTITY.match(value)
    assert match, f"{value!r} is not a Kubernetes quantity"
    return float(match["number"]) * SUFFIX[match["suffix"]]


def _executor(config: dict) -> dg.Executor:
    job = REPO.get_job("rescore_checkpoint")
    processed = process_config(step_executor.config_schema.config_type, config)
    assert processed.success, processed.errors
    with dg.instance_for_test() as instance:
        context = dg.InitExecutorContext(job=InMemoryJob(job), executor_def=step_executor, executor_config=processed.value, instance=instance)
        return step_executor.executor_creation_fn(context)


def test_every_job_runs_with_the_step_executor_and_accepts_each_choice() -> None:
    jobs = REPO.get_all_jobs()
    assert {j.name for j in jobs} >= {"prepare_dataset", "rescore_checkpoint", "diagnose_checkpoint", "train", "estimate_difficulty", "__ASSET_JOB"}
    assert all(j.executor_def is step_executor for j in jobs)

    job = REPO.get_job("rescore_checkpoint")
    for choice in ({}, {"multiprocess": {"max_concurrent": 2}}, {"in_process": {}}, {"celery": {"broker": "redis://h:6379/0", "backend": "redis://h:6379/1"}}):
        dg.validate_run_config(job, {"execution": {"config": choice}} if choice else {})
    for bad in ({"celery": {"brokr": "redis://h"}}, {"in_process": {}, "multiprocess": {}}, {"k8s": {}}):
        with pytest.raises(dg.DagsterInvalidConfigError):
            dg.validate_run_config(job, {"execution": {"config": bad}})


def test_the_run_config_choice_builds_that_executor_with_its_settings() -> None:
    multiprocess = _executor({"multiprocess": {"max_concurrent": 3}})
    assert isinstance(multiprocess, MultiprocessExecutor) and multiprocess._max_concurrent == 3
    assert isinstance(_executor({"in_process": {}}), InProcessExecutor)
    celery = _executor({"celery": {"broker": "redis://h:6379/0", "backend": "redis://h:6379/1"}})
    assert isinstance(celery, CeleryExecutor)
    assert (celery.broker, celery.backend) == ("redis://h:6379/0", "redis://h:6379/1")

    # Steps in other processes need a persistent instance and a job they can reload.
    needs = {dg.ExecutorRequirement.RECONSTRUCTABLE_JOB, dg.ExecutorRequirement.NON_EPHEMERAL_INSTANCE}
    assert needs <= set(step_executor.get_requirements({"celery": {}}))
    assert needs <= set(step_executor.get_requirements({"multiprocess": {}}))
    assert step_executor.get_requirements({"in_process": {}}) == []


def _tagged_ops() -> dict[str, dict]:
    return {node.name: json.loads(node.tags[K8S_TAG]) for job in REPO.get_all_jobs() for node in job.graph.iterate_node_defs() if K8S_TAG in node.tags}


def test_model_steps_carry_k8s_resource_requests_kubernetes_would_admit() -> None:
    tagged = _tagged_ops()
    assert set(tagged) == MODEL_STEPS, "every step that loads a model, and only those, asks for a GPU pod"
    for name, config in tagged.items():
        assert set(config) <= K8S_CONFIG_KEYS, f"{name}: {set(config) - K8S_CONFIG_KEYS} is no dagster-k8s config key"
        resources = config["container_config"]["resources"]
        assert set(resources) <= RESOURCE_KEYS, name
        requests, limits = resources["requests"], resources["limits"]
        assert all(isinstance(v, str) for v in {**requests, **limits}.values()), f"{name}: quantities are strings"
        assert requests["nvidia.com/gpu"] == limits["nvidia.com/gpu"] == "1", "an extended resource's request must equal its limit"
        for resource in requests.keys() & limits.keys():
            assert _quantity(requests[resource]) <= _quantity(limits[resource]), f"{name}: {resource} request above its limit"


@pytest.mark.skipif(importlib.util.find_spec("dagster_k8s") is None, reason="dagster-k8s is not installed (the tags are checked against its documented keys above)")
def test_dagster_k8s_parses_the_tags_into_container_resources() -> None:
    from dagster_k8s.job import get_user_defined_k8s_config

    for job in REPO.get_all_jobs():
        for node in job.graph.iterate_node_defs():
            if K8S_TAG in node.tags:
                parsed = get_user_defined_k8s_config(node.tags)
                assert parsed.container_config["resources"] == json.loads(node.tags[K8S_TAG])["container_config"]["resources"]
