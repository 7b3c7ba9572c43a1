"""The Dagster resources are thin adapters over the library configs: every library field is
exposed or deliberately internal, and environment overrides are read when a step runs."""

from __future__ import annotations

from dataclasses import field, make_dataclass
from pathlib import Path

import dagster as dg
import pytest

from gainrl_ops.core.layout import Layout
from gainrl_ops.data.arithmetic import ArithmeticConfig
from gainrl_ops.data.prompts import PromptConfig
from gainrl_ops.data.sources import DatasetSource, HeldOutConfig
from gainrl_ops.data.versions import current_label
from gainrl_ops.diagnostics.config import DiagnosticsConfig
from gainrl_ops.scoring.checkpoints import LocalCheckpointStore
from gainrl_ops.scoring.config import ScoreConfig
from pipelines.defs.curriculum.assets import raw_dataset
from pipelines.resources import (
    DatasetResource,
    HeldOutResource,
    ModelResource,
    ScoringResource,
    StorageResource,
    TrainingResource,
    _build,
    default_resources,
    unexposed,
)

LIBRARY_CONFIGS = {ScoreConfig, PromptConfig, ArithmeticConfig, DatasetSource, HeldOutConfig, DiagnosticsConfig, LocalCheckpointStore}


def _resource_types() -> list[type[dg.ConfigurableResource]]:
    """The resource classes the definitions use (a resource configured at launch is a partial one)."""
    return [getattr(r, "resource_cls", type(r)) for r in default_resources().values()]


def test_every_library_config_field_is_exposed_by_its_resource_or_listed_as_internal() -> None:
    covered = {cls: resource for resource in _resource_types() for cls in getattr(resource, "LIBRARY", {})}
    assert set(covered) == LIBRARY_CONFIGS
    assert {f"{resource.__name__}/{cls.__name__}": unexposed(cls, resource) for cls, resource in covered.items()} == {
        f"{resource.__name__}/{cls.__name__}": set() for cls, resource in covered.items()
    }


def test_a_new_library_field_without_a_resource_field_is_refused_not_dropped() -> None:
    grown = make_dataclass("ScoreConfig", [("max_seconds", float, field(default=1.0))], bases=(ScoreConfig,), frozen=True)
    with pytest.raises(TypeError, match=r"ScoringResource does not expose ScoreConfig fields \['max_seconds'\]"):
        _build(grown, ScoringResource())
    assert _build(ScoreConfig, ScoringResource(inter_weight=2.0, max_batch_size=3)) == ScoreConfig(inter_weight=2.0, max_batch_size=3)


def test_environment_overrides_are_read_when_the_step_runs_and_run_config_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from pipelines.definitions import defs  # loaded before the variables are set, as a code server would

    assert defs.get_repository_def()
    monkeypatch.setenv("GAINRL_DATASET_NAME", "late")
    monkeypatch.setenv("GAINRL_MODEL", "some/model")
    monkeypatch.setenv("GAINRL_EVAL_DATA", "/data/eval.json")
    monkeypatch.setenv("GAINRL_RUNS", "/data/runs.yaml")
    assert DatasetResource().source.name == "late" and DatasetResource(name="given").source.name == "given"
    assert ModelResource().model_id == "some/model" and ModelResource(base_model="embedded").model_id == "embedded"
    assert HeldOutResource().config.path == "/data/eval.json" and TrainingResource().path == Path("/data/runs.yaml")

    result = dg.materialize([raw_dataset], resources={"storage": StorageResource(root=str(tmp_path)), "dataset": DatasetResource(n_problems=12)})
    assert result.success and current_label(Layout(tmp_path), "late").rows == 12

    monkeypatch.delenv("GAINRL_DATASET_NAME")
    assert DatasetResource().source.name == DatasetSource.name and HeldOutResource(path="x.json").config.path == "x.json"
