"""`make demo`: materialize the whole chain on the embedded default and say where to look.

Runs go into the persistent Dagster instance at $DAGSTER_HOME, so `make ui` shows them.
"""

import sys
import time

import dagster as dg

from gainrl_ops.catalog import EXAMPLE_QUERIES, catalog_path

from . import assets, checks
from .definitions import resources

PREPARE = [assets.raw_dataset, assets.base_checkpoint, assets.tokenized_shards]
RESCORE = [assets.angle_scores, assets.curriculum, assets.curriculum_report]


def _materialize(instance: dg.DagsterInstance, selection: list, partition: str | None = None) -> dg.ExecuteInProcessResult:
    everything = [*dg.load_assets_from_modules([assets]), *dg.load_asset_checks_from_modules([checks])]
    result = dg.materialize(everything, selection=selection, partition_key=partition, instance=instance, resources=resources())
    failed = [e.check_name for e in result.get_asset_check_evaluations() if not e.passed]
    if failed:
        raise SystemExit(f"asset checks failed: {failed}")
    return result


def main() -> int:
    started = time.perf_counter()
    instance = dg.DagsterInstance.get()
    prepared = _materialize(instance, PREPARE)
    base = next(e for e in prepared.get_asset_materialization_events() if e.asset_key.to_user_string() == "base_checkpoint")
    checkpoint = base.step_materialization_data.materialization.metadata["checkpoint"].value
    _materialize(instance, RESCORE, partition=checkpoint)
    root = resources()["storage"].layout.root
    print(f"\nDone in {time.perf_counter() - started:.0f} s: checkpoint {checkpoint} scored, ranked and reported.")
    print(f"DuckDB catalog: {catalog_path(root)}\nTry:")
    for query in EXAMPLE_QUERIES:
        print(f"\n  .venv/bin/gainrl sql \"{' '.join(query.split())}\"")
    print("\nOr browse the assets, runs and plots: make ui  (then open http://127.0.0.1:3000)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
