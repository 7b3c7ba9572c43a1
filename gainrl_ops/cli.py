"""`gainrl` command line: score a dataset with a checkpoint, and query the catalog, without Dagster.

Errors a user can fix (a bad file, a bad name, a bad query) are one line on stderr,
`gainrl <command>: <file>[, row N][, field F]: <reason>`, with exit code 2; `--debug`
shows the traceback. torch and transformers are imported only by the commands that run a model,
and polars, pyarrow and the dataset loaders only by those that load data: `gainrl sql` starts
about as fast as a bare DuckDB query.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from numbers import Number
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from gainrl_ops.core.layout import Layout
from gainrl_ops.curriculum.catalog import (
    EXAMPLE_QUERIES,
    ReadOnlyError,
    catalog_problems,
    check_read_only,
    connect_readonly,
    describe_error,
    refresh_catalog,
    refresh_if_changed,
)
from gainrl_ops.data.arithmetic import EMBEDDED, ArithmeticConfig
from gainrl_ops.data.errors import DatasetError
from gainrl_ops.data.prompts import DEFAULT_SYSTEM_PROMPT, SHARD_SIZE, PromptConfig
from gainrl_ops.scoring.config import DEFAULT_INTER_WEIGHT
from gainrl_ops.scoring.hardware import AUTO, DTYPES

if TYPE_CHECKING:
    import pyarrow as pa

# What a user can fix: these end in one line; anything else is a bug and keeps its traceback.
USER_ERRORS = (DatasetError, ReadOnlyError, OSError, ValueError, json.JSONDecodeError, duckdb.Error)
MAX_CELL_CHARS = 80


def _user_error(error: BaseException) -> bool:
    # Arrow's errors count too, but only a command that loaded pyarrow can raise them, and
    # importing it here would cost every command a quarter of a second.
    arrow = sys.modules.get("pyarrow")
    return isinstance(error, USER_ERRORS) or (arrow is not None and isinstance(error, arrow.ArrowException))


def _score(args: argparse.Namespace) -> int:
    from gainrl_ops.scoring.phases import Phases

    phases = Phases()
    with phases.phase("import"):  # only what scoring a given model needs: no builder, training, polars or plotting
        from gainrl_ops.data.datasets import FieldMap
        from gainrl_ops.data.prompts import load_few_shot
        from gainrl_ops.data.shards import tokenize_to_shards
        from gainrl_ops.data.sources import DatasetSource, prepare_dataset
        from gainrl_ops.data.versions import labels_restored_on_error, settle
        from gainrl_ops.scoring.checkpoints import resolve_model, unregistered
        from gainrl_ops.scoring.models import load_tokenizer
        from gainrl_ops.scoring.scorer import ScoreConfig, score_and_publish
        from gainrl_ops.scoring.target import CheckpointTarget

    few_shot = load_few_shot(args.few_shot) if args.few_shot else ()  # a bad file fails before any model work
    layout = Layout.default()
    source = DatasetSource(
        path=args.data,
        name=args.name or (Path(args.data).stem if args.data != EMBEDDED else DatasetSource.name),
        fields=FieldMap(problem=args.problem_field, answer=args.answer_field),
        on_error=args.on_error,
        generator=ArithmeticConfig(n_problems=args.n_problems),
    )
    # One transaction: the name serves the new version only once its scores are published and
    # the catalog is refreshed; a failure anywhere puts both labels back (see data/versions.py).
    with labels_restored_on_error(layout, source.name):
        with phases.phase("load"):
            loaded, label = prepare_dataset(source, layout)
        print(f"dataset {source.name} (version {label.version}): {loaded.table.num_rows} prompts, {loaded.rejects.num_rows} rejected, {loaded.duplicates} duplicates")

        prompt = PromptConfig(system_prompt=args.system_prompt, few_shot=few_shot, max_tokens=args.max_tokens)
        with phases.phase("load"):
            model_path = resolve_model(args.model, layout)
            tokenizer = load_tokenizer(model_path)
        with phases.phase("tokenize"):
            tokenize_to_shards(loaded.table, tokenizer, prompt, layout, source.name, label.version, shard_size=args.shard_size)
        with phases.phase("load"):
            target = CheckpointTarget(layout, source, label.version, unregistered(model_path, name=model_path), prompt, args.dtype, args.device)
            model = target.load_model()
        summary = score_and_publish(model, target.plan(), ScoreConfig(inter_weight=args.inter_weight), phases=phases)
        with phases.phase("write"):
            settle(layout, source.name)
        with phases.phase("refresh"):
            refresh_catalog(layout.root)
    print(f"scored {summary.rows} prompts in {target.dtype} ({summary.parts_written} parts written, {summary.parts_reused} reused) -> {target.scores}")
    print(_top_prompts(target.ranked_scores, loaded.table))
    if args.profile:
        phases.write(Path(args.profile))
    return 0


def _top_prompts(ranked_scores: Path, prompts: pa.Table, n: int = 5) -> str:
    """The first `n` rows of a ranked scores file with their problems, as a text table."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    columns = ["rank", "id", "angle_score", "c_intra", "c_inter", "n_tokens"]
    top = next(pq.ParquetFile(ranked_scores).iter_batches(batch_size=n, columns=columns), None)
    rows = top.to_pylist() if top is not None else []
    found = prompts.select(["id", "problem"]).filter(pc.is_in(prompts["id"], pa.array([r["id"] for r in rows], pa.string())))
    problems = dict(zip(found["id"].to_pylist(), found["problem"].to_pylist()))
    types = [str(top.schema.field(c).type) if top is not None else "" for c in columns] + ["string"]
    return format_table([*columns, "problem"], types, [(*r.values(), problems.get(r["id"])) for r in rows])


def _cell(value: object) -> str:
    text = "null" if value is None else format(value, ".6g") if isinstance(value, float) else str(value)
    text = text.replace("\n", "\\n")
    return text if len(text) <= MAX_CELL_CHARS else text[: MAX_CELL_CHARS - 1] + "…"


def format_table(columns: list[str], types: list[str], rows: list[tuple]) -> str:
    """Rows as an aligned text table: names, types, a rule, then the rows (numbers right-aligned,
    long values cut at MAX_CELL_CHARS)."""
    cells = [[_cell(v) for v in row] for row in rows]
    numeric = [any(isinstance(row[i], Number) and not isinstance(row[i], bool) for row in rows) for i in range(len(columns))]
    widths = [max(len(c), len(t), *(len(row[i]) for row in cells)) for i, (c, t) in enumerate(zip(columns, types))]

    def line(values: list[str], right: list[bool]) -> str:
        return "  ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)).rstrip()

    left = [False] * len(columns)
    return "\n".join([line(columns, left), line(types, left), line(["-" * w for w in widths], left), *(line(row, numeric) for row in cells)])


def _sql(args: argparse.Namespace) -> int:
    root = Layout.default().root
    if args.refresh:  # a refresh returns what it left out; reading that back would open the catalog once more
        problems = [(path, error) for _, path, error in refresh_if_changed(root)]
    else:
        problems = [(p["path"], p["error"]) for p in catalog_problems(root)]
    for path, error in problems:
        print(f"gainrl sql: warning: {path} left out of the catalog: {error}", file=sys.stderr)
    with connect_readonly(root) as con:
        check_read_only(con, args.query)
        relation = con.sql(args.query)
        if relation is None:
            print("0 rows")
            return 0
        # One row past the limit tells whether there are more, without reading them all.
        rows = relation.limit(args.max_rows + 1).fetchall()
        columns, types = relation.columns, [str(t) for t in relation.types]
    print(format_table(columns, types, rows[: args.max_rows]))
    more = " (more rows not shown: add a LIMIT or raise --max-rows)" if len(rows) > args.max_rows else ""
    print(f"{min(len(rows), args.max_rows)} rows{more}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from gainrl_ops.curriculum.exports import export_curriculum, read_curriculum, served_ranking

    out, layout = Path(args.out), Layout.default()
    info = export_curriculum(read_curriculum(layout, served_ranking(layout, args.dataset, args.checkpoint)), args.format, out)
    print(f"exported {info.rows} prompts of {info.dataset} (version {info.dataset_version}), ranked by checkpoint "
          f"{info.checkpoint} (scoring code {info.code_version}), as {info.format} -> {out}")
    return 0


def _import_ranking(args: argparse.Namespace) -> int:
    from gainrl_ops.curriculum.rankings import import_ranking

    label = args.label or Path(args.ranking).stem
    target, rows = import_ranking(Layout.default(), args.dataset, Path(args.ranking), label)
    print(f"imported ranking {label!r}: {rows} prompts of {args.dataset} -> {target} (SQL: rankings WHERE ranking = '{label}')")
    return 0


def _one_line(error: BaseException) -> str:
    if isinstance(error, duckdb.Error):
        return describe_error(error)
    if isinstance(error, json.JSONDecodeError):
        return f"invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}"
    if isinstance(error, OSError) and error.filename:
        return f"{error.filename}: {error.strerror or error}"
    return " ".join(str(error).split()) or type(error).__name__


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gainrl", description=__doc__.split("\n\n")[0])
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True)
    score = commands.add_parser("score", help="load, tokenize and score a dataset with one checkpoint")
    score.add_argument("--data", default=EMBEDDED, help="JSON, JSONL, Parquet or saved HF dataset; 'embedded' generates arithmetic")
    score.add_argument("--model", default=EMBEDDED, help="HF model id or local path; 'embedded' builds the tiny default")
    score.add_argument("--name", help="dataset name in the storage root (default: file stem); letters, digits, '.', '_', '-'")
    score.add_argument("--problem-field")
    score.add_argument("--answer-field")
    score.add_argument("--on-error", choices=("fail", "skip"), default="fail")
    score.add_argument("--n-problems", type=int, default=ArithmeticConfig.n_problems, help="size of the generated dataset")
    score.add_argument("--system-prompt", default=DEFAULT_SYSTEM_PROMPT)
    score.add_argument(
        "--few-shot", metavar="FILE",
        help='JSON list of {"question", "answer"} objects, rendered as user/assistant turns before each question',
    )
    score.add_argument("--max-tokens", type=int, default=PromptConfig.max_tokens)
    score.add_argument("--shard-size", type=int, default=SHARD_SIZE)
    score.add_argument("--inter-weight", type=float, default=DEFAULT_INTER_WEIGHT)
    score.add_argument("--dtype", default=AUTO, choices=(AUTO, *DTYPES), help="auto: bfloat16 where the hardware runs it natively, else float32")
    score.add_argument("--device", default="auto")
    score.add_argument("--profile", metavar="FILE", help="write the seconds of each phase (import, load, tokenize, score, write, refresh) as JSON")
    score.set_defaults(run=_score)
    sql = commands.add_parser(
        "sql",
        help="query the curriculum catalog (DuckDB views over the stored artifacts), read-only",
        epilog="views: checkpoints, prompts, rejects, tokens, scores, curriculum, dataset_versions, epochs, selections, "
        "evaluations, diagnostics, rankings, catalog_problems; macro: rerank(w, ck := NULL). Only SELECT-like statements run, and only files "
        "under the storage root can be read (duckdb -readonly <root>/gainrl.duckdb has full power). Examples:\n\n"
        + "\n\n".join(EXAMPLE_QUERIES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sql.add_argument("query", help="SQL, e.g. \"SELECT * FROM curriculum WHERE rank <= 10\"")
    sql.add_argument("--max-rows", type=int, default=40, help="rows to print at most")
    sql.add_argument("--no-refresh", dest="refresh", action="store_false", help="query the catalog as last refreshed")
    sql.set_defaults(run=_sql)
    export = commands.add_parser(
        "export",
        help="write a dataset's ranked curriculum for another trainer (verl, hf, jsonl, pt), best first",
        epilog="verl: Parquet in verl's RL layout; hf: a datasets folder (load_from_disk, e.g. for TRL); jsonl: one object "
        "per line (OpenRLHF, prime-rl); pt: a 1-D int64 tensor of input-file row indices, the reference's "
        "angle_sorted_data layout (rejected and duplicate rows are left out).",
    )
    export.add_argument("--dataset", required=True, help="dataset name")
    export.add_argument("--checkpoint", default="latest", help="checkpoint fingerprint, or 'latest' (the last registered one that scored it)")
    export.add_argument("--format", required=True, choices=("verl", "hf", "jsonl", "pt"))
    export.add_argument("--out", required=True, help="file (a folder for hf) to write")
    export.set_defaults(run=_export)
    ranking = commands.add_parser("import-ranking", help="read a ranking made elsewhere (.pt row indices) to compare in SQL")
    ranking.add_argument("--dataset", required=True, help="dataset name (its input file's row order is what the indices count)")
    ranking.add_argument("--ranking", required=True, help="a .pt file holding a 1-D integer tensor, best row first")
    ranking.add_argument("--label", help="name in the rankings view (default: the file stem)")
    ranking.set_defaults(run=_import_ranking)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.run(args)
    except Exception as error:
        if not _user_error(error):
            raise
        if args.debug:
            traceback.print_exc()
        print(f"gainrl {args.command}: {_one_line(error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
