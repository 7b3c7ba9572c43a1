"""The column registry (`core.columns`) against what users' SQL relies on: every view's
columns, in order, with their types, as they were before the views were generated from it;
and every writer's Arrow schema generated from the same declarations."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from gainrl_ops.core import columns
from gainrl_ops.core.columns import Column, arrow_schema
from gainrl_ops.curriculum.catalog import SOURCES, connect_readonly, refresh_catalog
from gainrl_ops.data.datasets import CANONICAL_SCHEMA, REJECTS_SCHEMA
from gainrl_ops.data.shards import SHARD_SCHEMA
from gainrl_ops.scoring.scorer import SCORE_SCHEMA

# DESCRIBE of each view generated from the registry (and of the rerank macro), "name TYPE" in order.
VIEWS = {
    "catalog_problems": "view VARCHAR, path VARCHAR, error VARCHAR",
    "checkpoints": (
        "fingerprint VARCHAR, name VARCHAR, path VARCHAR, registered_at TIMESTAMP WITH TIME ZONE, source "
        "VARCHAR, parameters BIGINT, parent VARCHAR"
    ),
    "curriculum": (
        "dataset VARCHAR, dataset_version VARCHAR, prompt_fingerprint VARCHAR, checkpoint VARCHAR, rank "
        "BIGINT, n_prompts BIGINT, percentile DOUBLE, id VARCHAR, angle_score DOUBLE, c_intra DOUBLE, c_inter "
        "DOUBLE, inter_weight DOUBLE, n_tokens INTEGER, question_tokens INTEGER, system_tokens INTEGER, "
        "truncated BOOLEAN, difficulty DOUBLE, problem VARCHAR"
    ),
    "diagnostics": (
        "dataset VARCHAR, dataset_version VARCHAR, prompt_fingerprint VARCHAR, checkpoint VARCHAR, id "
        "VARCHAR, rank BIGINT, angle_score DOUBLE, c_intra DOUBLE, c_inter DOUBLE, n_tokens INTEGER, "
        "difficulty DOUBLE, grad_norm DOUBLE, gradient_source VARCHAR, loss DOUBLE, reward_mean DOUBLE, "
        "reward_std DOUBLE, completion_tokens DOUBLE, reference_tokens BIGINT"
    ),
    "epochs": (
        "run VARCHAR, epoch INTEGER, sampler VARCHAR, feedback VARCHAR, mu DOUBLE, sigma DOUBLE, accuracy "
        "DOUBLE, held_out_accuracy DOUBLE, feedback_angle DOUBLE, prompt_score DOUBLE, mu_next DOUBLE, "
        "seconds DOUBLE, feedback_seconds DOUBLE, checkpoint_path VARCHAR"
    ),
    "evaluations": (
        "dataset VARCHAR, dataset_version VARCHAR, checkpoint VARCHAR, id VARCHAR, answer VARCHAR, completion "
        "VARCHAR, predicted VARCHAR, correct BOOLEAN"
    ),
    "imported_rankings": "dataset VARCHAR, dataset_version VARCHAR, ranking VARCHAR, id VARCHAR, rank BIGINT, row BIGINT",
    "prompts": (
        "dataset VARCHAR, dataset_version VARCHAR, id VARCHAR, problem VARCHAR, answer VARCHAR, source "
        "VARCHAR, difficulty DOUBLE, metadata VARCHAR, row BIGINT"
    ),
    "rankings": "dataset VARCHAR, dataset_version VARCHAR, source VARCHAR, ranking VARCHAR, id VARCHAR, rank BIGINT",
    "rejects": (
        "dataset VARCHAR, dataset_version VARCHAR, file VARCHAR, row BIGINT, field VARCHAR, reason VARCHAR, "
        "raw VARCHAR"
    ),
    "scores": (
        "id VARCHAR, c_intra DOUBLE, c_inter DOUBLE, angle_score DOUBLE, inter_weight DOUBLE, n_tokens "
        "INTEGER, question_tokens INTEGER, system_tokens INTEGER, truncated BOOLEAN, dataset VARCHAR, "
        "dataset_version VARCHAR, checkpoint VARCHAR, model VARCHAR, tokenizer VARCHAR, prompt_fingerprint "
        "VARCHAR, dtype VARCHAR, code_version VARCHAR, rank BIGINT, n_prompts BIGINT, percentile DOUBLE"
    ),
    "rollouts": (
        "run VARCHAR, epoch INTEGER, checkpoint VARCHAR, id VARCHAR, n INTEGER, mean_reward DOUBLE, reward_std DOUBLE, "
        "all_equal BOOLEAN"
    ),
    "selections": "run VARCHAR, epoch INTEGER, rank BIGINT, id VARCHAR",
    "tokens": (
        "dataset VARCHAR, dataset_version VARCHAR, prompt_fingerprint VARCHAR, id VARCHAR, n_tokens INTEGER, "
        "truncated BOOLEAN, system_start INTEGER, system_end INTEGER, question_start INTEGER, question_end "
        "INTEGER, input_ids INTEGER[]"
    ),
    "rerank(w)": (
        "dataset VARCHAR, dataset_version VARCHAR, prompt_fingerprint VARCHAR, checkpoint VARCHAR, rank "
        "BIGINT, n_prompts BIGINT, percentile DOUBLE, id VARCHAR, angle_score DOUBLE, c_intra DOUBLE, c_inter "
        "DOUBLE, inter_weight DOUBLE, n_tokens INTEGER, question_tokens INTEGER, system_tokens INTEGER, "
        "truncated BOOLEAN, difficulty DOUBLE, problem VARCHAR"
    ),
}


def test_each_view_keeps_its_columns_order_and_types(gainrl_home: Path) -> None:
    """Users' SQL names these columns: the registry must generate exactly them (typed even
    over an empty root)."""
    refresh_catalog(gainrl_home)
    described = {}
    with connect_readonly(gainrl_home) as con:
        for view in VIEWS:
            relation = "SELECT * FROM rerank(8.0)" if view == "rerank(w)" else f"SELECT * FROM {view}"
            described[view] = ", ".join(f"{name} {kind}" for name, kind, *_ in con.sql(f"DESCRIBE {relation}").fetchall())
    assert described == VIEWS


def test_every_view_column_has_a_comment(gainrl_home: Path) -> None:
    refresh_catalog(gainrl_home)
    views = [source.view for source in SOURCES] + ["curriculum"]
    with connect_readonly(gainrl_home) as con:
        missing = con.execute(
            "SELECT table_name, column_name FROM duckdb_columns() WHERE database_name = 'gainrl' "
            "AND table_name IN (SELECT unnest(?)) AND (comment IS NULL OR comment = '')", [views]
        ).fetchall()
    assert missing == []


def test_writers_use_the_registry_schemas() -> None:
    assert CANONICAL_SCHEMA == arrow_schema(columns.PROMPT)
    assert REJECTS_SCHEMA == arrow_schema(columns.REJECT)
    assert SHARD_SCHEMA == arrow_schema(columns.SHARD)
    assert SCORE_SCHEMA == arrow_schema(columns.SCORE)
    assert SCORE_SCHEMA.field("c_intra") == pa.field("c_intra", pa.float64(), nullable=True)
    assert SHARD_SCHEMA.field("input_ids") == pa.field("input_ids", pa.list_(pa.int32()), nullable=False)


def test_a_view_reads_a_registry_column_with_the_nan_rule() -> None:
    assert Column("x", "DOUBLE", "d", finite=True).select() == 'CAST(CASE WHEN isfinite("x") THEN "x" END AS DOUBLE) AS "x"'
    assert Column("x", "DOUBLE", "d").read_as("y + 1").select() == 'CAST(y + 1 AS DOUBLE) AS "x"'
