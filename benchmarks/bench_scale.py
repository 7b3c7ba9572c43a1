"""Benchmark: loading, tokenizing and querying 100k and 1M prompts on one machine, against the floor.

For each size it generates a JSONL dataset (arithmetic word problems of realistic length),
loads it, tokenizes it with the embedded model's tokenizer, writes score artifacts for 3
checkpoints through the real publish path (per-shard parts compacted into one ranked file per
checkpoint), and times, each in a fresh subprocess so that peak memory is its own (each size in
a store of its own, holding that one dataset: the shape the targets are stated for; then, with
both sizes, the large store again once the small dataset is scored into it too, for two rows
that are shown but not counted):

=================  ===========================================  ======================================
step               gainrl                                       floor
=================  ===========================================  ======================================
loading            load_dataset + write_dataset                 polars.read_ndjson of the same file
loading .gz        the same, from the gzip-compressed file      polars.read_ndjson of the same .gz file
tokenization       tokenize_to_shards (spans included)          the tokenizer's batch call, offsets on
curriculum top100  curriculum view, one checkpoint, rank<=100   read_parquet of that checkpoint's file
rerank             rerank(2.0, ck := one checkpoint), top 100   (same)
spearman           corr of two checkpoints' stored ranks        (same)
refresh_catalog    refresh_catalog                              (same)
snapshot           export_ranking of one checkpoint (COPY)      (peak memory target only)
=================  ===========================================  ======================================

    python benchmarks/bench_scale.py [--sizes 100000 1000000] [--out benchmarks/results/bench_scale.json]
"""

from __future__ import annotations

import argparse
import functools
import gzip
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

CHECKPOINTS = ("a1" * 8, "b2" * 8, "c3" * 8)
SHARD = 1024
TARGETS = {  # (kind, value): "ratio" to the floor, or "seconds" / "peak_mb" absolute
    "loading": ("ratio", 3.0), "loading_memory": ("peak_ratio", 1.5), "tokenization": ("ratio", 1.3),
    "loading_gz": ("ratio", 3.0), "loading_gz_memory": ("peak_ratio", 1.5),
    "curriculum_top100": ("seconds", 0.3), "rerank_one_checkpoint": ("seconds", 0.5), "spearman_two_checkpoints": ("seconds", 2.0),
    "refresh_catalog": ("seconds", 0.5), "snapshot": ("peak_mb", 500.0),
}


def generate(path: Path, n: int) -> None:
    """The JSON Lines file, and a gzip-compressed copy of it beside it (`path` + ".gz")."""
    rng = random.Random(0)
    with open(path, "w") as f:
        for i in range(n):
            a, b, w = rng.randint(10, 999), rng.randint(1, 99), rng.randint(1, 9)
            f.write(json.dumps({
                "problem": f"A farmer has {a} apples and sells {b} of them at the market on day {i}. "
                           f"Each apple weighs {w} ounces. How many ounces of apples are left?",
                "answer": str((a - b) * w),
                "difficulty": i % 5,
            }) + "\n")
    with open(path, "rb") as plain, gzip.open(f"{path}.gz", "wb", compresslevel=6) as packed:
        shutil.copyfileobj(plain, packed, 1 << 24)


def peak_mb() -> float:
    """This process's peak resident memory. Not getrusage's ru_maxrss: it survives exec, so a
    subprocess would report its parent's peak when that was larger."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _measure(fn) -> dict[str, float]:
    started = time.perf_counter()
    fn()
    return {"seconds": time.perf_counter() - started, "peak_mb": peak_mb()}


def step(name: str, root: Path, size: int) -> dict[str, float]:
    """One measurement, run in this (fresh) process; imports are part of what is timed."""
    started = time.perf_counter()
    data = root / f"scale-{size}.jsonl"
    packed = root / f"scale-{size}.jsonl.gz"
    if name in ("loading_floor", "loading_gz_floor"):
        import polars as pl

        result = _measure(lambda: pl.read_ndjson(data if name == "loading_floor" else packed))
    elif name in ("loading", "loading_gz"):
        from gainrl_ops.core.layout import Layout
        from gainrl_ops.data.sources import DatasetSource, prepare_dataset

        # The compressed copy loads into a store of its own, so the store the later steps read
        # holds one dataset: the 1M x 3 checkpoints the SQL targets are stated for.
        if name == "loading":
            source, store = DatasetSource(path=str(data), name=f"scale{size}"), root
        else:
            source, store = DatasetSource(path=str(packed), name=f"scale{size}gz"), root / "compressed"
        result = _measure(lambda: prepare_dataset(source, Layout(store)))
    elif name in ("tokenization", "tokenization_floor"):
        import pyarrow.parquet as pq

        from gainrl_ops.core.layout import Layout
        from gainrl_ops.data.prompts import PromptConfig, render_text
        from gainrl_ops.data.shards import tokenize_to_shards
        from gainrl_ops.data.versions import current_label
        from gainrl_ops.scoring.models import load_tokenizer
        from gainrl_ops.training.embedded import embedded_model_path

        layout = Layout(root)
        label = current_label(layout, f"scale{size}")
        prompts = pq.read_table(layout.prompts(label.dataset, label.version), columns=["id", "problem"])
        tokenizer = load_tokenizer(str(embedded_model_path()))
        if name == "tokenization":
            result = _measure(lambda: tokenize_to_shards(prompts, tokenizer, PromptConfig(), layout, label.dataset, label.version, SHARD))
        else:
            texts = [render_text(tokenizer, q, PromptConfig()) for q in prompts.column("problem").to_pylist()]

            def batch_call() -> None:
                for start in range(0, len(texts), SHARD):
                    tokenizer(texts[start : start + SHARD], add_special_tokens=False, return_offsets_mapping=True)

            result = _measure(batch_call)
    else:
        result = _sql_step(name, root, size)
    result["process_seconds"] = time.perf_counter() - started
    return result


def _sql_step(name: str, root: Path, size: int) -> dict[str, float]:
    from gainrl_ops.core.keys import ScoresKey
    from gainrl_ops.core.layout import Layout
    from gainrl_ops.curriculum.catalog import connect_readonly, refresh_catalog
    from gainrl_ops.curriculum.ranking import export_ranking
    from gainrl_ops.data.versions import current_label

    layout = Layout(root)
    label = current_label(layout, f"scale{size}")
    one, two = CHECKPOINTS[:2]
    key = ScoresKey(label.dataset, label.version, "f" * 16, one)
    if name == "refresh_catalog":
        return _measure(lambda: refresh_catalog(root))
    if name == "snapshot":
        return _measure(lambda: export_ranking(layout, key))
    queries = {
        "curriculum_top100": f"SELECT * FROM curriculum WHERE checkpoint = '{one}' AND rank <= 100 ORDER BY rank",
        "curriculum_top100_order_limit": f"SELECT * FROM curriculum WHERE checkpoint = '{one}' ORDER BY rank LIMIT 100",
        "rerank_one_checkpoint": f"SELECT * FROM rerank(2.0, ck := '{one}') WHERE rank <= 100",
        "spearman_two_checkpoints": f"""SELECT corr(a.rank, b.rank) FROM scores a JOIN scores b USING (dataset, dataset_version, prompt_fingerprint, id)
                                        WHERE a.checkpoint = '{one}' AND b.checkpoint = '{two}'""",
        "read_one_checkpoint_floor": f"SELECT * FROM read_parquet('{layout.ranked_scores(key)}')",
    }
    with connect_readonly(root) as con:
        con.execute(queries[name]).fetchall()  # the first run opens files; time the ones after it
        times = []
        for _ in range(3):
            started = time.perf_counter()
            con.execute(queries[name]).fetchall()
            times.append(time.perf_counter() - started)
    return {"seconds": sorted(times)[1], "peak_mb": peak_mb()}


def write_scores(root: Path, size: int) -> None:
    """Score artifacts for 3 checkpoints: per-shard parts, compacted by the real publish path."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gainrl_ops.core.keys import ScoresKey
    from gainrl_ops.core.layout import Layout
    from gainrl_ops.core.storage import write_parquet_atomic
    from gainrl_ops.data.shards import Shard
    from gainrl_ops.data.versions import current_label
    from gainrl_ops.scoring.publish import SCORE_SCHEMA, compact, part_path

    layout = Layout(root)
    label = current_label(layout, f"scale{size}")
    ids = pq.read_table(layout.prompts(label.dataset, label.version), columns=["id"]).column("id")
    rng = np.random.default_rng(0)
    for checkpoint in CHECKPOINTS:
        folder = layout.scores(ScoresKey(label.dataset, label.version, "f" * 16, checkpoint))
        for index, start in enumerate(range(0, len(ids), SHARD)):
            part = ids.slice(start, SHARD)
            n = len(part)
            intra, inter = rng.uniform(0, 1, n), rng.uniform(0, 0.2, n)
            constant = {"dataset": label.dataset, "dataset_version": label.version, "checkpoint": checkpoint, "model": "synthetic",
                        "tokenizer": "t" * 16, "prompt_fingerprint": "f" * 16, "dtype": "float32", "code_version": "synthetic"}
            table = pa.table({
                "id": part, "c_intra": intra, "c_inter": inter, "angle_score": intra + 8 * inter, "inter_weight": np.full(n, 8.0),
                "n_tokens": np.full(n, 60, np.int32), "question_tokens": np.full(n, 30, np.int32), "system_tokens": np.full(n, 20, np.int32),
                "truncated": np.zeros(n, bool), **{k: [v] * n for k, v in constant.items()},
            }, schema=SCORE_SCHEMA)
            write_parquet_atomic(table, part_path(folder, Shard(Path("x"), "", n, index)))
        compact(folder)


def run(name: str, root: Path, size: int) -> dict[str, float]:
    """One step in a fresh process; its measurement is printed as soon as it is known, and a
    failed step stops the benchmark with the step's own error output."""
    done = subprocess.run([sys.executable, __file__, "--step", name, "--root", str(root), "--size", str(size)],
                          capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    if done.returncode != 0:
        raise SystemExit(f"bench_scale: step {name} at {size} prompts exited with {done.returncode}:\n{done.stderr[-4000:]}")
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"  {size} {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in measured.items()), flush=True)
    return measured


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--out", type=Path, default=HERE / "results" / "bench_scale.json")
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        print(json.dumps(step(args.step, args.root, args.size)))
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as scratch:
        for size in args.sizes:
            root = Path(scratch) / f"store-{size}"  # one store per size: a query reads one dataset's prompts
            root.mkdir()
            generate(root / f"scale-{size}.jsonl", size)
            steps = ("loading_floor", "loading", "loading_gz_floor", "loading_gz", "tokenization_floor", "tokenization")
            measured = {name: run(name, root, size) for name in steps}
            write_scores(root, size)
            for name in ("refresh_catalog", "read_one_checkpoint_floor", "curriculum_top100", "curriculum_top100_order_limit",
                         "rerank_one_checkpoint", "spearman_two_checkpoints", "snapshot"):
                measured[name] = run(name, root, size)
            size_rows = table(size, measured)
            rows += size_rows
            for row in size_rows:
                print(json.dumps(row))
        if len(args.sizes) > 1:
            rows += shared_store_rows(Path(scratch), min(args.sizes), max(args.sizes))
    # The targets are stated for one dataset of each size; the shared store's rows are shown, not counted.
    every_target_met = {str(size): all(row["met"] for row in rows if row["size"] == size and "store" not in row) for size in args.sizes}
    result = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_average": os.getloadavg()},
              "sizes": args.sizes, "checkpoints": len(CHECKPOINTS), "every_target_met": every_target_met, "rows": rows}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


def shared_store_rows(scratch: Path, small: int, large: int) -> list[dict[str, object]]:
    """The large store again once the small dataset is loaded and scored into it too, by the same
    3 checkpoints, as a user with two datasets has them: the query that joins the problem text
    and the snapshot (whose join DuckDB once misjudged in such a store and ran out of memory)."""
    root = scratch / f"store-{large}"
    generate(root / f"scale-{small}.jsonl", small)
    run("loading", root, small)
    write_scores(root, small)
    measured = {name: run(name, root, large) for name in ("read_one_checkpoint_floor", "curriculum_top100_order_limit", "snapshot")}
    rows = [
        _row(large, "curriculum top 100 (ORDER BY rank LIMIT 100), second dataset in the store",
             measured["curriculum_top100_order_limit"], measured["read_one_checkpoint_floor"], "curriculum_top100"),
        _row(large, "snapshot (peak memory), second dataset in the store", measured["snapshot"], None, "snapshot"),
    ]
    for row in rows:
        row["store"] = f"{large} and {small} prompts, one dataset each"
        print(json.dumps(row))
    return rows


def _row(size: int, step: str, gainrl: dict[str, float], floor: dict[str, float] | None, target: str) -> dict[str, object]:
    kind, value = TARGETS[target]
    measured = {"ratio": gainrl["seconds"] / floor["seconds"] if floor else None, "peak_ratio": gainrl["peak_mb"] / floor["peak_mb"] if floor else None,
                "seconds": gainrl["seconds"], "peak_mb": gainrl["peak_mb"]}[kind]
    return {
        "size": size, "step": step, "seconds": round(gainrl["seconds"], 3), "rows_per_s": round(size / gainrl["seconds"]),
        "peak_rss_mb": round(gainrl["peak_mb"]), "floor_seconds": round(floor["seconds"], 3) if floor else None,
        "floor_peak_rss_mb": round(floor["peak_mb"]) if floor else None,
        "ratio_to_floor": round(gainrl["seconds"] / floor["seconds"], 2) if floor else None,
        "target": f"{kind} <= {value}", "measured": round(measured, 3), "met": measured <= value,
    }


def table(size: int, m: dict[str, dict[str, float]]) -> list[dict[str, object]]:
    row = functools.partial(_row, size)
    floor = m["read_one_checkpoint_floor"]
    return [
        row("loading", m["loading"], m["loading_floor"], "loading"),
        row("loading (peak memory)", m["loading"], m["loading_floor"], "loading_memory"),
        row("loading .jsonl.gz", m["loading_gz"], m["loading_gz_floor"], "loading_gz"),
        row("loading .jsonl.gz (peak memory)", m["loading_gz"], m["loading_gz_floor"], "loading_gz_memory"),
        row("tokenization", m["tokenization"], m["tokenization_floor"], "tokenization"),
        row("curriculum top 100 (rank <= 100)", m["curriculum_top100"], floor, "curriculum_top100"),
        row("curriculum top 100 (ORDER BY rank LIMIT 100)", m["curriculum_top100_order_limit"], floor, "curriculum_top100"),
        row("rerank over one checkpoint", m["rerank_one_checkpoint"], floor, "rerank_one_checkpoint"),
        row("spearman between two checkpoints", m["spearman_two_checkpoints"], floor, "spearman_two_checkpoints"),
        row("refresh_catalog", m["refresh_catalog"], None, "refresh_catalog"),
        row("snapshot (peak memory)", m["snapshot"], None, "snapshot"),
    ]


if __name__ == "__main__":
    sys.exit(main())
