"""The one place the SQL catalog is refreshed: after every step that publishes an artifact."""

import dagster as dg

from gainrl_ops.curriculum.catalog import refresh_catalog


@dg.success_hook(required_resource_keys={"storage"})
def refresh_catalog_hook(context: dg.HookContext) -> None:
    """Rebuild the DuckDB views, so a kind of artifact written for the first time shows up in SQL;
    a file that cannot be read is left out of its view and reported here."""
    for view, path, error in refresh_catalog(context.resources.storage.layout.root):
        context.log.warning(f"catalog: {path} left out of view {view}: {error}")
