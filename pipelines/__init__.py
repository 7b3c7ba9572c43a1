"""Dagster definitions for gainrl: thin assets over `gainrl_ops`."""

import warnings

import dagster as dg

from gainrl_ops.core.progress import quiet_library_bars

# One check verdict per checkpoint needs partitioned asset checks, a Dagster preview feature we
# use on purpose; its warning would print at every definitions load (each UI reload, each step).
warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec", category=dg.PreviewWarning)

# Steps write to compute-log files and `make demo` often to a log: bars only in a terminal.
quiet_library_bars()
