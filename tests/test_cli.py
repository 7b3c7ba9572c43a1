"""What a user expects of any command line: `gainrl --version`, every subcommand's --help
ending with examples to copy, and one summary line per step when the output is not a terminal."""

from __future__ import annotations

import argparse
import re
from importlib import metadata
from pathlib import Path

import pytest

from gainrl_ops import cli


def test_version_is_the_installed_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out == f"gainrl {metadata.version('gainrl')}\n"


def test_every_subcommand_help_ends_with_one_or_two_examples() -> None:
    (commands,) = (action for action in cli.parser()._actions if isinstance(action, argparse._SubParsersAction))
    assert set(commands.choices) == {"score", "status", "sql", "export", "import-ranking"}
    for name, command in commands.choices.items():
        head, examples = command.format_help().rstrip().rsplit("\nexamples:\n", 1)
        lines = examples.splitlines()
        assert 1 <= len(lines) <= 2 and all(line.startswith(f"  gainrl {name}") for line in lines), name
        assert f"usage: gainrl {name}" in head


def test_score_and_export_print_one_summary_line_per_step_off_a_terminal(
    tiny_model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Off a terminal (pytest's captured stderr is not one) no scoring bar is drawn: each step
    says what it did, with its counts and seconds, in one line."""
    args = ["score", "--model", str(tiny_model_path), "--n-problems", "40", "--shard-size", "16", "--device", "cpu"]
    assert cli.main(args) == 0
    out, err = capsys.readouterr()
    loaded, tokenized, scored = (re.search(pattern, out, re.MULTILINE) for pattern in (
        r"^dataset \S+ \(version \w+\): (\d+) prompts, \d+ rejected, \d+ duplicates in [\d.]+ s$",
        r"^tokenized (\d+) prompts into 3 shards in [\d.]+ s -> ",
        r"^scored (\d+) prompts in [\d.]+ s \(float32; 3 parts written, 0 reused\) -> ",
    ))
    assert loaded and tokenized and scored, out
    assert loaded.group(1) == tokenized.group(1) == scored.group(1) == "40"
    assert "scoring" not in err

    assert cli.main(["export", "--dataset", "arithmetic", "--format", "jsonl", "--out", str(tmp_path / "c.jsonl")]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert re.match(r"exported 40 prompts of arithmetic \(version \w+\) in [\d.]+ s, ranked by checkpoint \w+ ", line), line


def test_export_draws_a_bar_in_a_terminal_and_none_in_a_log(
    tiny_model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    args = ["score", "--model", str(tiny_model_path), "--n-problems", "30", "--shard-size", "16", "--device", "cpu"]
    assert cli.main(args) == 0
    capsys.readouterr()
    assert cli.main(["export", "--dataset", "arithmetic", "--format", "verl", "--out", str(tmp_path / "log.parquet")]) == 0
    assert capsys.readouterr().err == ""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert cli.main(["export", "--dataset", "arithmetic", "--format", "jsonl", "--out", str(tmp_path / "c.jsonl")]) == 0
    drawn = terminal.getvalue()
    assert "export 30 prompts" in drawn and "/30 " in drawn and drawn.endswith("\r"), "one live bar, cleared when done"
