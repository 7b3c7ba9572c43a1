"""Light imports: loading the Dagster definitions, `gainrl --help` and `gainrl sql` never import
torch, transformers, TRL or Hugging Face datasets (seconds each; only commands and steps that
run a model need them). Each case runs in a fresh interpreter, since this one has them loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "trl", "datasets")


def heavy_modules_after(program: str, home: Path, modules: tuple[str, ...] = HEAVY) -> dict:
    """Run `program` in a fresh interpreter; which of `modules` it left in sys.modules, and its result."""
    probe = textwrap.dedent(program) + textwrap.dedent(f"""
        import json, sys
        print(json.dumps({{"loaded": [m for m in {modules!r} if m in sys.modules], "result": result}}))
    """)
    env = {**os.environ, "GAINRL_HOME": str(home), "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_loading_the_definitions_imports_no_model_library(tmp_path: Path) -> None:
    """Nor polars: every UI reload and every step of the multiprocess executor loads them."""
    found = heavy_modules_after("""
        from pipelines.definitions import defs
        result = len(defs.get_repository_def().asset_graph.get_all_asset_keys())
    """, tmp_path / "home", modules=(*HEAVY, "polars"))
    assert found["loaded"] == [] and found["result"] == 11


@pytest.mark.parametrize("argv", [["--help"], ["score", "--help"], ["sql", "--help"]], ids=["help", "score-help", "sql-help"])
def test_gainrl_help_imports_no_model_library(tmp_path: Path, argv: list[str]) -> None:
    found = heavy_modules_after(f"""
        from gainrl_ops import cli
        try:
            cli.main({argv!r})
        except SystemExit as stop:
            result = stop.code
    """, tmp_path / "home")
    assert found == {"loaded": [], "result": 0}


def test_gainrl_sql_on_an_empty_root_imports_no_model_library(tmp_path: Path) -> None:
    found = heavy_modules_after("""
        from gainrl_ops import cli
        result = [cli.main(["sql", "SELECT count(*) AS n FROM scores"]), cli.main(["sql", "--no-refresh", "SELECT * FROM curriculum"])]
    """, tmp_path / "home")
    assert found == {"loaded": [], "result": [0, 0]}
    assert (tmp_path / "home" / "gainrl.duckdb").exists()


def test_gainrl_sql_loads_no_dataframe_library(tmp_path: Path) -> None:
    """`gainrl sql` prints from DuckDB's own rows: polars, pyarrow and numpy would cost it more
    than the query itself (the benchmark holds it to 1.5x a bare duckdb query)."""
    found = heavy_modules_after("""
        from gainrl_ops import cli
        result = [cli.main(["sql", "SELECT count(*) AS n FROM scores"]), cli.main(["sql", "SELECT 1 AS one"])]
    """, tmp_path / "home", modules=(*HEAVY, "polars", "pyarrow", "numpy", "pandas"))
    assert found == {"loaded": [], "result": [0, 0]}


# What scoring a given model never needs: the embedded model's builder, training, evaluation,
# plotting and the dataframe and dataset libraries. (`tokenizers.trainers` is not listed:
# transformers' own tokenizer module imports it, for the published script as for us.)
NOT_FOR_SCORING = (
    "gainrl_ops.training.embedded", "gainrl_ops.training.evaluation", "gainrl_ops.training.trainer", "gainrl_ops.training.plots",
    "polars", "matplotlib", "trl", "datasets",
)


def test_gainrl_score_of_a_model_path_imports_neither_the_builder_nor_training(tmp_path: Path, tiny_model_path: Path) -> None:
    data = tmp_path / "sums.jsonl"
    data.write_text("".join(json.dumps({"problem": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n" for i in range(6)))
    profile = tmp_path / "phases.json"
    found = heavy_modules_after(f"""
        from gainrl_ops import cli
        result = cli.main(["score", "--data", {str(data)!r}, "--model", {str(tiny_model_path)!r}, "--name", "sums", "--profile", {str(profile)!r}])
    """, tmp_path / "home", modules=NOT_FOR_SCORING)
    assert found == {"loaded": [], "result": 0}
    phases = json.loads(profile.read_text())
    assert set(phases["seconds"]) == {"import", "load", "tokenize", "score", "write", "refresh"}
    assert phases["finished_at"] - phases["started_at"] >= sum(phases["seconds"].values()) > 0


def test_a_dagster_scoring_step_imports_neither_the_builder_nor_training(tmp_path: Path, tiny_model_path: Path) -> None:
    """What the plan and score steps import, and the base model's path resolved as the resources resolve it."""
    found = heavy_modules_after(f"""
        from pipelines.definitions import defs
        from gainrl_ops.core.layout import Layout
        from gainrl_ops.training.resolve import resolve_model
        from gainrl_ops.scoring.models import ModelSpec, load_model
        from gainrl_ops.scoring.scorer import score_part
        path = resolve_model({str(tiny_model_path)!r}, Layout.default())
        result = type(load_model(ModelSpec(path, dtype="float32", device="cpu"))).__name__
    """, tmp_path / "home", modules=NOT_FOR_SCORING)
    assert found == {"loaded": [], "result": "Qwen2ForCausalLM"}
