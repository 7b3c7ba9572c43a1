"""Partitions: one per model checkpoint (keyed by content fingerprint), one per named training run."""

import dagster as dg

from gainrl_ops.run_config import load_run_configs

from .resources import RUNS_FILE

checkpoints = dg.DynamicPartitionsDefinition(name="checkpoints")
training_runs = dg.StaticPartitionsDefinition(sorted(load_run_configs(RUNS_FILE)))
