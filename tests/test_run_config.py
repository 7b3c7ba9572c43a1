"""Training-run configurations refuse what cannot run, and map to TRL's GRPOConfig by name."""

from pathlib import Path

import pytest

from gainrl_ops.training.config import (
    GRPO_DEFAULTS,
    TrainingRunConfig,
    load_run_configs,
)


def test_grpo_fields_default_and_override_by_trl_name() -> None:
    run = TrainingRunConfig(name="r", grpo={"learning_rate": 1e-3, "beta": 0.04})
    assert run.grpo == {**GRPO_DEFAULTS, "learning_rate": 1e-3, "beta": 0.04}
    assert run.beta == 0.5, "GAIN-RL's accuracy threshold and TRL's KL beta stay apart"


@pytest.mark.parametrize(("fields", "message"), [
    ({"subset_size": 6, "grpo": {"num_generations": 4, "per_device_train_batch_size": 16}}, "subset_size 6 must be a multiple of the 4 prompts per step"),
    ({"grpo": {"num_generations": 3, "per_device_train_batch_size": 16}}, "must be a multiple of grpo.num_generations 3"),
    ({"grpo": {"num_generations": 1, "per_device_train_batch_size": 16}}, "at least 2"),
    ({"n_frac": 0.0}, "n_frac must lie in \\(0, 1\\]"),
    ({"sigma_frac": 1.5}, "sigma_frac must lie in \\(0, 1\\]"),
    ({"adj_max_frac": -0.1}, "adj_max_frac must lie in \\[0, 1\\]"),
    ({"beta": 2.0}, "beta is an accuracy threshold"),
    ({"epochs": 0}, "epochs must be at least 1"),
    ({"sampler": "random"}, "sampler 'random' is not one of"),
    ({"feedback": "score"}, "feedback 'score' is not one of \\('rollout', 'prompt'\\)"),
])
def test_a_run_that_cannot_run_is_refused_with_the_reason(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainingRunConfig(name="r", **fields)


def test_run_names_are_safe_folder_names() -> None:
    with pytest.raises(ValueError, match=r"\[A-Za-z0-9._-\]\+"):
        TrainingRunConfig(name="../escape")


def test_runs_file_errors_name_the_file_and_the_run(tmp_path: Path) -> None:
    path = tmp_path / "runs.yaml"
    path.write_text("good: {epochs: 2}\nbad: {subset_size: 5}\n")
    with pytest.raises(ValueError, match=r"runs.yaml: training run 'bad': subset_size 5"):
        load_run_configs(path)
    path.write_text("typo: {epoch: 2}\n")
    with pytest.raises(ValueError, match=r"runs.yaml: run 'typo' has unknown fields \['epoch'\]"):
        load_run_configs(path)


def test_the_bundled_runs_file_loads() -> None:
    runs = load_run_configs(Path(__file__).resolve().parents[1] / "data" / "training_runs.yaml")
    assert {"gainrl-demo", "uniform-demo", "length-demo"} <= set(runs)
    assert runs["length-demo"].sampler == "length" and runs["gainrl-demo"].feedback == "rollout"


def test_grpo_config_takes_the_run_fields_and_refuses_unknown_ones(tmp_path: Path) -> None:
    from gainrl_ops.training.trainer import grpo_config

    args = grpo_config(TrainingRunConfig(name="r", epochs=2, grpo={"learning_rate": 1e-3, "beta": 0.04}), tmp_path)
    assert (args.learning_rate, args.beta, args.num_train_epochs, args.per_device_train_batch_size) == (1e-3, 0.04, 2, 32)
    assert not args.bf16 and args.use_cpu
    with pytest.raises(ValueError, match=r"\['not_a_field'\] are not trl.GRPOConfig fields"):
        grpo_config(TrainingRunConfig(name="r", grpo={"not_a_field": 1}), tmp_path)
