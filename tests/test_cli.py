"""What a user expects of any command line: `gainrl --version`, and every subcommand's --help
ending with examples to copy."""

from __future__ import annotations

import argparse
from importlib import metadata

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
