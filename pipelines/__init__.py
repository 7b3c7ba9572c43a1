"""Dagster definitions for gainrl: thin assets over `gainrl_ops`."""
