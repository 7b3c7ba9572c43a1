"""`gainrl` command line: score a dataset with a checkpoint, see and query what is stored, without Dagster.

Errors a user can fix (a bad file, a bad name, a bad query) are one line on stderr,
`gainrl <command>: <file>[, row N][, field F]: <reason>`, with exit code 2; `--debug`
shows the traceback. torch and transformers are imported only by the commands that run a model,
and polars, pyarrow and the dataset loaders only by those that load data: `gainrl sql` starts
about as fast as a bare DuckDB query, and so does `gainrl status`. A long `gainrl score` shows a
progress bar when stderr is a terminal; otherwise each step prints one summary line with its counts
and seconds.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from gainrl_ops.core.collector import freeze_for_exit
from gainrl_ops.core.layout import Layout
from gainrl_ops.core.progress import quiet_library_bars
from gainrl_ops.core.tables import format_table
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


def _user_error(error: BaseException) -> bool:
    # Arrow's errors count too, but only a command that loaded pyarrow can raise them, and
    # importing it here would cost every command a quarter of a second.
    arrow = sys.modules.get("pyarrow")
    return isinstance(error, USER_ERRORS) or (arrow is not None and isinstance(error, arrow.ArrowException))


def _score(args: argparse.Namespace) -> int:
    from gainrl_ops.core.collector import collector_paused
    from gainrl_ops.scoring.phases import Phases

    phases = Phases()
    with collector_paused() as started:  # imports and model loading, see core/collector.py
        with phases.phase("import"):  # only what scoring a given model needs: no builder, training, polars or plotting
            from gainrl_ops.data.datasets import FieldMap
            from gainrl_ops.data.prompts import load_few_shot
            from gainrl_ops.data.shards import tokenize_to_shards
            from gainrl_ops.data.sources import DatasetSource, prepare_dataset
            from gainrl_ops.data.streams import stem
            from gainrl_ops.data.versions import labels_restored_on_error, settle
            from gainrl_ops.scoring.checkpoints import unregistered
            from gainrl_ops.scoring.models import load_tokenizer
            from gainrl_ops.scoring.scorer import ScoreConfig, score_and_publish
            from gainrl_ops.scoring.target import CheckpointTarget
            from gainrl_ops.training.resolve import resolve_model

        few_shot = load_few_shot(args.few_shot) if args.few_shot else ()  # a bad file fails before any model work
        layout = Layout.default()
        source = DatasetSource(
            path=args.data,
            name=args.name or (stem(Path(args.data)) if args.data != EMBEDDED else DatasetSource.name),
            fields=FieldMap(problem=args.problem_field, answer=args.answer_field),
            on_error=args.on_error,
            generator=ArithmeticConfig(n_problems=args.n_problems),
        )
        # One transaction: the name serves the new version only once its scores are published and
        # the catalog is refreshed; a failure anywhere puts both labels back (see data/versions.py).
        with labels_restored_on_error(layout, source.name):
            with phases.phase("load"):
                loaded, label = prepare_dataset(source, layout)
            print(f"dataset {source.name} (version {label.version}): {loaded.rows} prompts, {loaded.rejects.num_rows} rejected, "
                  f"{loaded.duplicates} duplicates in {phases.seconds['load']:.1f} s")

            prompt = PromptConfig(system_prompt=args.system_prompt, few_shot=few_shot, max_tokens=args.max_tokens)
            with phases.phase("load"):
                model_path = resolve_model(args.model, layout)
                tokenizer = load_tokenizer(model_path)
            with phases.phase("tokenize"):
                shards = tokenize_to_shards(loaded.table, tokenizer, prompt, layout, source.name, label.version, shard_size=args.shard_size)
            print(f"tokenized {shards.rows} prompts into {len(shards.shards)} shards in {phases.seconds['tokenize']:.1f} s -> {shards.directory}")
            with phases.phase("load"):
                target = CheckpointTarget(layout, source, label.version, unregistered(model_path, name=model_path), prompt, args.dtype, args.device)
                model = target.load_model()
            started()
            summary = score_and_publish(model, target.plan(), ScoreConfig(inter_weight=args.inter_weight), progress=sys.stderr.isatty(), phases=phases)
            with phases.phase("write"):
                settle(layout, source.name)
            with phases.phase("refresh"):
                refresh_catalog(layout.root)
        print(f"scored {summary.rows} prompts in {phases.seconds['score']:.1f} s ({target.dtype}; {summary.parts_written} parts written, "
              f"{summary.parts_reused} reused) -> {target.scores}")
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
    from gainrl_ops.curriculum.exports import (
        export_curriculum,
        read_curriculum,
        served_ranking,
    )

    out, layout, started = Path(args.out), Layout.default(), time.perf_counter()
    info = export_curriculum(read_curriculum(layout, served_ranking(layout, args.dataset, args.checkpoint)), args.format, out)
    print(f"exported {info.rows} prompts of {info.dataset} (version {info.dataset_version}) in {time.perf_counter() - started:.1f} s, "
          f"ranked by checkpoint {info.checkpoint} (scoring code {info.code_version}), as {info.format} -> {out}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from gainrl_ops.store.status import render, store_status

    status = store_status(Layout.default().root, refresh=args.refresh)
    print(json.dumps(status.to_json(), indent=2) if args.json else render(status))
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


def _version() -> str:
    from importlib import metadata  # 20 ms of imports (email.*) that no other command needs

    try:
        return metadata.version("gainrl")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed: pip install -e .)"


class _VersionAction(argparse.Action):
    """`--version`, read from the installed package's metadata only when asked for."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the installed gainrl version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        print(f"gainrl {_version()}")
        parser.exit()


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def _command(commands: argparse._SubParsersAction, name: str, help: str, examples: tuple[str, ...], about: str = "") -> argparse.ArgumentParser:
    """A subcommand whose --help ends with `examples` (after `about`, if any), printed as written."""
    return commands.add_parser(
        name, help=help, description=help, epilog="\n\n".join(filter(None, [about, _examples(*examples)])),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gainrl", description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_examples("gainrl status", "gainrl score --data train.jsonl --model Qwen/Qwen2.5-0.5B-Instruct"),
    )
    parser.add_argument("--version", action=_VersionAction)
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True)
    score = _command(commands, "score", "load, tokenize and score a dataset with one checkpoint", (
        "gainrl score                      # the embedded arithmetic data and model",
        "gainrl score --data /data/train.jsonl --model Qwen/Qwen2.5-0.5B-Instruct --problem-field question",
    ))
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
    status = _command(commands, "status", "what is in the store: datasets, checkpoints, training runs, and the next command to run", (
        "gainrl status",
        "gainrl status --json | jq '.checkpoints[] | {name, accuracy}'",
    ), about="--json prints one object: root, datasets, checkpoints, runs, problems, next\n"
             "(each key is described in gainrl_ops/store/status.py).")
    status.add_argument("--json", action="store_true", help="print one JSON object, for scripts")
    status.add_argument("--no-refresh", dest="refresh", action="store_false", help="read the catalog as last refreshed")
    status.set_defaults(run=_status)
    sql = _command(
        commands, "sql", "query the curriculum catalog (DuckDB views over the stored artifacts), read-only", (
            "gainrl sql \"SELECT * FROM dataset_versions\"",
            "gainrl sql --max-rows 100 \"SELECT * FROM curriculum WHERE rank <= 100 ORDER BY rank\"",
        ),
        about="views: checkpoints, prompts, rejects, tokens, scores, curriculum, dataset_versions, epochs, selections, rollouts, "
        "evaluations, diagnostics, rankings, pass_rates, imported_rankings, catalog_problems; macro: rerank(w, ck := NULL). Only SELECT-like statements run, and only files "
        "under the storage root can be read (duckdb -readonly <root>/gainrl.duckdb has full power). Queries to start from:\n\n"
        + "\n\n".join(EXAMPLE_QUERIES),
    )
    sql.add_argument("query", help="SQL, e.g. \"SELECT * FROM curriculum WHERE rank <= 10\"")
    sql.add_argument("--max-rows", type=int, default=40, help="rows to print at most")
    sql.add_argument("--no-refresh", dest="refresh", action="store_false", help="query the catalog as last refreshed")
    sql.set_defaults(run=_sql)
    export = _command(
        commands, "export", "write a dataset's ranked curriculum for another trainer (verl, hf, jsonl, pt), best first", (
            "gainrl export --dataset gsm8k --format verl --out gsm8k_curriculum.parquet",
            "gainrl export --dataset gsm8k --checkpoint 0123456789abcdef --format pt --out gsm8k.pt",
        ),
        about="verl: Parquet in verl's RL layout; hf: a datasets folder (load_from_disk, e.g. for TRL); jsonl: one object\n"
        "per line (OpenRLHF, prime-rl); pt: a 1-D int64 tensor of input-file row indices, the reference's\n"
        "angle_sorted_data layout (rejected and duplicate rows are left out).",
    )
    export.add_argument("--dataset", required=True, help="dataset name")
    export.add_argument("--checkpoint", default="latest", help="checkpoint fingerprint, or 'latest' (the last registered one that scored it)")
    export.add_argument("--format", required=True, choices=("verl", "hf", "jsonl", "pt"))
    export.add_argument("--out", required=True, help="file (a folder for hf) to write")
    export.set_defaults(run=_export)
    ranking = _command(commands, "import-ranking", "read a ranking made elsewhere (.pt row indices) to compare in SQL", (
        "gainrl import-ranking --dataset gsm8k --ranking angle_sorted_data/gsm8k.pt --label reference",
    ))
    ranking.add_argument("--dataset", required=True, help="dataset name (its input file's row order is what the indices count)")
    ranking.add_argument("--ranking", required=True, help="a .pt file holding a 1-D integer tensor, best row first")
    ranking.add_argument("--label", help="name in the rankings view (default: the file stem)")
    ranking.set_defaults(run=_import_ranking)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    quiet_library_bars()
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


def run() -> None:
    """The `gainrl` command: `main`, then the process's exit; after a command that loaded torch,
    without the interpreter's last collection over the objects torch and transformers leave
    (0.8 s after `gainrl score`). A light command exits as usual: it would save nothing, and
    DuckDB's bindings report the objects a frozen heap keeps at exit as leaks on stderr."""
    code = main()
    if "torch" in sys.modules:
        freeze_for_exit()
    sys.exit(code)


if __name__ == "__main__":
    run()
