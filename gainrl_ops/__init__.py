"""gainrl_ops: GAIN-RL's angle-based curriculum as plain functions and classes (no Dagster)."""

__version__ = "0.1.0"
