"""What `make demo` and `make ui` print: bars only in a terminal, no Dagster warning or banner."""

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from gainrl_ops.core.progress import LIBRARY_BAR_SWITCHES, bar, quiet_library_bars
from pipelines.instance import prepare_instance_home


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _draw(total: int) -> None:
    with bar(total, "tokenizing", unit="prompt") as progress:
        for _ in range(total):
            progress.update(1)


def test_a_bar_writes_nothing_when_stderr_is_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    log = io.StringIO()
    monkeypatch.setattr("sys.stderr", log)
    _draw(500)
    assert log.getvalue() == ""


def test_a_bar_is_drawn_in_a_terminal_and_cleared_when_done(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    _draw(3)
    assert "tokenizing" in terminal.getvalue()
    assert terminal.getvalue().endswith("\r"), "a finished bar is cleared, not left as a line"


# transformers imported before the switch (turned off through its API), datasets after it
# (through the environment), in a process whose stderr is a pipe.
LIBRARY_STATE = """
from transformers.utils import logging as transformers_logging
from gainrl_ops.core.progress import quiet_library_bars
quiet_library_bars()
from datasets.utils import are_progress_bars_disabled
print(transformers_logging.is_progress_bar_enabled(), not are_progress_bars_disabled())
"""


def test_library_bars_are_off_when_stderr_is_not_a_terminal() -> None:
    env = {k: v for k, v in os.environ.items() if k not in LIBRARY_BAR_SWITCHES}
    done = subprocess.run([sys.executable, "-c", LIBRARY_STATE], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"], done.stderr


def test_library_bars_are_left_alone_in_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    for switch in LIBRARY_BAR_SWITCHES:
        monkeypatch.delenv(switch, raising=False)
    monkeypatch.setattr("sys.stderr", Terminal())
    quiet_library_bars()
    assert not any(switch in os.environ for switch in LIBRARY_BAR_SWITCHES)


def test_the_instance_home_gets_a_dagster_yaml_once_and_opens_without_warning_or_telemetry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    home = tmp_path / "dagster"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    assert prepare_instance_home() == home
    with caplog.at_level(logging.WARNING, logger="dagster"), dg.DagsterInstance.get() as instance:
        assert not instance.telemetry_enabled
    assert not caplog.records, [r.getMessage() for r in caplog.records]

    edited = "telemetry:\n  enabled: true\n"
    (home / "dagster.yaml").write_text(edited)
    prepare_instance_home()
    assert (home / "dagster.yaml").read_text() == edited, "the user's own dagster.yaml is kept"


def test_the_instance_home_defaults_to_the_storage_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setenv("GAINRL_HOME", str(tmp_path))
    assert prepare_instance_home() == tmp_path / "dagster"
    assert (tmp_path / "dagster" / "dagster.yaml").exists()
