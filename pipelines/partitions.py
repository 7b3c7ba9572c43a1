"""Partitions: one per model checkpoint (keyed by content fingerprint), one per named training run.

Both are dynamic: the rescoring sensor adds checkpoints as they land in the store, and the
training-runs sensor adds the run names of the runs file, so no file is read at import.
"""

import dagster as dg

checkpoints = dg.DynamicPartitionsDefinition(name="checkpoints")
training_runs = dg.DynamicPartitionsDefinition(name="training_runs")

# A checkpoint partition is a fingerprint; runs on one carry its name, for the Runs page and its filter.
CHECKPOINT_TAG = "gainrl/checkpoint"


def checkpoint_tags(name: str) -> dict[str, str]:
    """The run tags of a run on the checkpoint partition named `name` in the checkpoint store."""
    return {CHECKPOINT_TAG: name}
