"""Turn library results into Dagster metadata: schemas, previews, plots."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import pyarrow as pa

if TYPE_CHECKING:  # loading the definitions should not pay for polars (0.25 s per load)
    import polars as pl


def table_schema(schema: pa.Schema) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(f.name, str(f.type)) for f in schema])


def preview(frame: pl.DataFrame, rows: int = 10, width: int = 80) -> dg.MarkdownMetadataValue:
    """The first rows as a Markdown table, long text cut so the table stays readable."""
    import polars as pl

    head = frame.head(rows).with_columns(
        pl.col(c).cast(pl.String).str.slice(0, width) for c, t in frame.schema.items() if t == pl.String
    )
    header = "| " + " | ".join(head.columns) + " |\n|" + "---|" * len(head.columns) + "\n"
    body = "".join("| " + " | ".join(_cell(v) for v in row) + " |\n" for row in head.iter_rows())
    return dg.MetadataValue.md(header + body)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def image(path: Path) -> dg.MarkdownMetadataValue:
    """A PNG inlined as Markdown, so the Dagster UI shows the plot itself."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return dg.MetadataValue.md(f"![{Path(path).stem}](data:image/png;base64,{data})")
