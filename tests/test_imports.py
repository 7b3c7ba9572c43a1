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
