"""Rankings made elsewhere (the reference's `angle_sorted_data/*.pt`), and how rankings agree.

An imported ranking is a permutation of the input file's rows (or of the rows an export
kept), best first. It is mapped to
prompt ids through the rows the loader kept (a rejected or duplicate row has no prompt) and
stored beside ours, so the `rankings` SQL view and the curriculum report can compare any two
rankings, and each one with question length.
"""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow.parquet as pq

from gainrl_ops.core.layout import Layout, safe_name
from gainrl_ops.core.stats import spearman, top_k_overlap
from gainrl_ops.core.storage import atomic_path, restored_on_error
from gainrl_ops.curriculum.catalog import connect_readonly, refresh_catalog
from gainrl_ops.data.versions import current_label

if TYPE_CHECKING:  # imported where used: loading the Dagster definitions should not pay for polars
    import polars as pl

_INTEGER_DTYPES = ("torch.int64", "torch.int32", "torch.int16", "torch.int8", "torch.uint8")


class RankingError(ValueError):
    """A ranking file that cannot be used, with the reason."""


def read_ranking_tensor(path: Path, n_rows: int) -> np.ndarray:
    """The row indices of a `.pt` ranking, checked to be distinct rows of an `n_rows`-row input
    (all of them, as the reference ships, or the rows an export kept)."""
    import torch

    try:
        tensor = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as error:  # torch raises pickle, zip and runtime errors for a bad file
        raise RankingError(f"{path}: not a tensor file that torch.load reads with weights_only=True ({type(error).__name__})") from None
    if not isinstance(tensor, torch.Tensor):
        raise RankingError(f"{path}: holds a {type(tensor).__name__}, not a tensor")
    if tensor.dim() != 1:
        raise RankingError(f"{path}: a tensor of shape {tuple(tensor.shape)}; expected 1-D row indices")
    if str(tensor.dtype) not in _INTEGER_DTYPES:
        raise RankingError(f"{path}: dtype {tensor.dtype}; expected integer row indices (int64)")
    rows = tensor.numpy().astype(np.int64)
    out_of_range = np.flatnonzero((rows < 0) | (rows >= n_rows))
    if out_of_range.size:
        at = int(out_of_range[0])
        raise RankingError(f"{path}: index {rows[at]} at position {at} is out of range for an input of {n_rows} rows")
    values, counts = np.unique(rows, return_counts=True)
    if (counts > 1).any():
        raise RankingError(f"{path}: not a permutation: row {values[counts > 1][0]} appears {counts.max()} times")
    return rows


def import_ranking(layout: Layout, dataset: str, path: Path, name: str) -> tuple[Path, int]:
    """Store the ranking in `path` as the external ranking `name` of the dataset's served
    version and refresh the catalog; returns where it went and how many ranked rows are prompts.
    If the refresh fails, the ranking stored under `name` before (or none) comes back."""
    import polars as pl

    safe_name(name, "ranking label")
    label = current_label(layout, dataset)
    rows = read_ranking_tensor(Path(path), label.rows_read or label.rows)
    prompts = pl.read_parquet(layout.prompts(dataset, label.version), columns=["id", "row"])
    ranked = (
        pl.DataFrame({"row": rows, "position": np.arange(rows.size)})
        .join(prompts, on="row", how="inner")
        .sort("position")
        .with_row_index("rank", offset=1)
        .select("id", pl.col("rank").cast(pl.Int64), "row")
    )
    target = layout.imported_ranking(dataset, label.version, name)
    meta = {"name": name, "file": str(Path(path).resolve()), "source": "external", "input_rows": int(rows.size)}
    table = ranked.to_arrow().replace_schema_metadata({b"gainrl.ranking": json.dumps(meta).encode()})
    with restored_on_error(target):
        with atomic_path(target) as tmp:
            pq.write_table(table, tmp)
        refresh_catalog(layout.root)
    return target, ranked.height


def ranking_agreement(layout: Layout, dataset: str, k: int = 100) -> pl.DataFrame:
    """Every pair of rankings of the dataset's served version (ours per checkpoint, imported
    ones, pass rates and learnability), and each ranking against question length: prompts in
    common, Spearman of the ranks and the overlap of the top k among the prompts in common.
    Against length, a positive rho means longer questions come later."""
    import polars as pl

    with connect_readonly(layout.root) as con:
        frame = con.sql(
            """SELECT r.source || ':' || r.ranking AS ranking, r.id, r.rank, length(p.problem) AS length
               FROM rankings r JOIN prompts p USING (dataset, dataset_version, id) WHERE r.dataset = ?""",
            params=[dataset],
        ).pl()
    rows = []
    by_name = {name: part.sort("rank") for (name,), part in frame.group_by("ranking", maintain_order=True)}
    for (a, first), (b, second) in combinations(sorted(by_name.items()), 2):
        both = first.join(second, on="id", suffix="_b")
        rho = spearman(both["rank"].to_numpy().astype(float), both["rank_b"].to_numpy().astype(float))
        # Over the prompts both rank: a ranking of a sample (pass rates) has no top k of the rest.
        overlap = top_k_overlap(both.sort("rank")["id"].to_list(), both.sort("rank_b")["id"].to_list(), min(k, max(both.height, 1)))
        rows.append((a, b, both.height, rho, overlap))
    for name, part in sorted(by_name.items()):
        rho = spearman(part["rank"].to_numpy().astype(float), part["length"].to_numpy().astype(float))
        rows.append((name, "question length (characters)", part.height, rho, None))
    return pl.DataFrame(rows, schema={"a": pl.String, "b": pl.String, "prompts": pl.Int64, "spearman": pl.Float64, "top_k_overlap": pl.Float64}, orient="row")
