"""Partitions: one per model checkpoint (keyed by content fingerprint), one per named training run.

Both are dynamic: the rescoring sensor adds checkpoints as they land in the store, and the
training-runs sensor adds the run names of the runs file, so no file is read at import.
"""

import dagster as dg

checkpoints = dg.DynamicPartitionsDefinition(name="checkpoints")
training_runs = dg.DynamicPartitionsDefinition(name="training_runs")
