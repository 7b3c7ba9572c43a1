"""One partition per model checkpoint, keyed by the checkpoint's content fingerprint."""

import dagster as dg

checkpoints = dg.DynamicPartitionsDefinition(name="checkpoints")
