"""The Dagster UI, in a real browser: `dagster dev -w workspace.yaml` serves the asset graph,
the jobs, the sensor and the schedule.

Needs Debian's chromium (`apt-get install -y chromium`, giving /usr/bin/chromium) and the
`playwright` Python package; `playwright install` is never needed. Skips cleanly without them.
A full-page screenshot of the asset graph is written to `$GAINRL_HOME/screenshots/asset_graph.png`
and, when `GAINRL_SCREENSHOT_DIR` is set, copied there too.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ASSETS = ["raw_dataset", "base_checkpoint", "tokenized_shards", "angle_scores", "curriculum", "curriculum_report"]
JOBS = ["prepare_dataset", "rescore_checkpoint", "diagnose_checkpoint", "train"]
AUTOMATIONS = ["new_checkpoint_sensor", "training_runs_sensor", "rescore_latest_schedule"]

GROUP = "curriculum"  # the asset group of the chain (pipelines/defs/curriculum/assets.py)
LOCATION = "pipelines.definitions:defs"  # the code location workspace.yaml names (module:attribute)

# The pages that show them in Dagster 1.13. The global lineage (/asset-groups) collapses the graph
# to one box per group once there is more than one group, so the chain is checked on its group's page.
GLOBAL_LINEAGE_URL = "/asset-groups"
ASSET_GRAPH_URL = f"/locations/{LOCATION}/asset-groups/{GROUP}/lineage"
AUTOMATION_URL = "/automation"
JOBS_URL = "/jobs"

SERVER_START_TIMEOUT_S = 120  # /server_info answers ~10 s after start; far longer on a loaded 2-core box
UI_TIMEOUT_MS = 90_000  # the code location loads after the webserver answers
STOP_TIMEOUT_S = 30
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The "Join the Dagster community" dialog opens on 127.0.0.1/localhost origins unless this is set;
# it would cover the graph in the screenshot.
DISMISS_NUX = "try { window.localStorage.setItem('communityNux', JSON.stringify('1')); } catch (e) {}"


def _chromium() -> str | None:
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    return shutil.which("chromium")


pytestmark = [
    pytest.mark.skipif(_chromium() is None, reason="Debian's chromium is not installed: apt-get install chromium"),
    pytest.mark.skipif(
        importlib.util.find_spec("playwright") is None, reason="the playwright package is not installed: pip install -e '.[test]'"
    ),
]
if importlib.util.find_spec("pytest_timeout") is not None:
    pytestmark.append(pytest.mark.timeout(300))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log_tail(log: Path, n: int = 80) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def _signals_not_ignored():
    """A background shell job (`pytest &` in CI) starts with SIGINT ignored, children inherit an
    ignored signal through exec, and dagster routes SIGTERM to SIGINT's handler: the server would
    then ignore the SIGTERM that stops it. A handled (not ignored) signal is reset to the default
    at exec, so handle SIGINT and SIGTERM here while the server starts."""
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) == signal.SIG_IGN:
            previous[signum] = signal.signal(signum, signal.default_int_handler)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _live_group_members(pgid: int) -> list[int]:
    """Processes of group `pgid` that are not zombies (Linux /proc); empty where /proc is missing."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()  # state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            live.append(int(stat.parent.name))
    return live


def _stop_group(proc: subprocess.Popen, pgid: int) -> None:
    """SIGTERM the server's whole process group, then SIGKILL whatever is left after a timeout."""
    if proc.poll() is None or _live_group_members(pgid):
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline and (proc.poll() is None or _live_group_members(pgid)):
            time.sleep(0.5)
    if proc.poll() is None or _live_group_members(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pass


def _wait_for_server(proc: subprocess.Popen, base: str, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"dagster dev exited with {proc.returncode} before serving; log tail:\n{_log_tail(log)}")
        try:
            with urllib.request.urlopen(f"{base}/server_info", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(1)
    pytest.fail(f"dagster dev did not answer {base}/server_info within {SERVER_START_TIMEOUT_S} s; log tail:\n{_log_tail(log)}")


def _dismiss_nux(page) -> None:
    """Click the community dialog away should it show despite the localStorage flag."""
    skip = page.get_by_role("button", name="Skip", exact=True)
    if skip.count() and skip.first.is_visible():
        skip.first.click()
        skip.first.wait_for(state="hidden", timeout=10_000)


def test_ui_shows_asset_graph_jobs_sensor_and_schedule(tmp_path: Path, gainrl_home: Path, tiny_model_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    chromium = _chromium()
    dagster = Path(sys.executable).parent / "dagster"
    assert dagster.exists(), f"no dagster executable next to {sys.executable}"

    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("")
    gainrl_home.mkdir(parents=True, exist_ok=True)
    log = tmp_path / "dagster_dev.log"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "GAINRL_HOME": str(gainrl_home),
        "GAINRL_MODEL": str(tiny_model_path),
        "PYTHONUNBUFFERED": "1",
    }

    started = time.monotonic()
    with log.open("wb") as log_file, _signals_not_ignored():
        proc = subprocess.Popen(
            [str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pgid = proc.pid  # start_new_session: the server leads its own process group
    screenshot = gainrl_home / "screenshots" / "asset_graph.png"
    try:
        _wait_for_server(proc, base, log)
        print(f"\n/server_info answered after {time.monotonic() - started:.1f} s")

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
            try:
                context = browser.new_context(viewport={"width": 1600, "height": 1000})
                context.add_init_script(DISMISS_NUX)
                context.set_default_timeout(UI_TIMEOUT_MS)
                page = context.new_page()

                # The global lineage knows the group.
                page.goto(base + GLOBAL_LINEAGE_URL, wait_until="domcontentloaded")
                page.get_by_text("Global asset lineage").first.wait_for(state="visible")
                page.locator("svg foreignObject").get_by_text(GROUP, exact=True).first.wait_for(state="visible")

                # The group's asset graph: every node of the chain, drawn in the graph's SVG.
                page.goto(base + ASSET_GRAPH_URL, wait_until="domcontentloaded")
                graph = page.locator("svg foreignObject")
                for name in ASSETS:
                    graph.get_by_text(name, exact=True).first.wait_for(state="visible")
                page.wait_for_timeout(1500)  # let the layout settle (zoom-to-fit) before the screenshot
                _dismiss_nux(page)
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=True)
                if extra := os.environ.get("GAINRL_SCREENSHOT_DIR"):
                    Path(extra).mkdir(parents=True, exist_ok=True)
                    shutil.copy2(screenshot, Path(extra) / "asset_graph.png")
                print(f"asset graph shown after {time.monotonic() - started:.1f} s; screenshot: {screenshot}")

                page.goto(base + AUTOMATION_URL, wait_until="domcontentloaded")
                for name in AUTOMATIONS:
                    page.get_by_text(name, exact=True).first.wait_for(state="visible")

                page.goto(base + JOBS_URL, wait_until="domcontentloaded")
                for name in JOBS:
                    page.get_by_text(name, exact=True).first.wait_for(state="visible")
            except BaseException:  # pytest-timeout's Failed is no Exception
                failure = tmp_path / "failure.png"
                try:
                    page.screenshot(path=str(failure), full_page=True, timeout=10_000)
                    print(f"page {page.url} at failure: {failure}")
                except Exception as exc:  # noqa: BLE001 - best effort, the original error matters
                    print(f"no failure screenshot: {exc!r}")
                raise
            finally:
                browser.close()
    except BaseException:
        print(f"dagster dev log tail ({log}):\n{_log_tail(log)}")
        raise
    finally:
        _stop_group(proc, pgid)

    assert proc.returncode is not None, "dagster dev still running"
    assert not _live_group_members(pgid), f"server processes outlived the test: {_live_group_members(pgid)}"
    print(f"dagster dev exited with {proc.returncode}; total {time.monotonic() - started:.1f} s")

    assert screenshot.exists() and screenshot.stat().st_size > 10_000, f"screenshot missing or trivial: {screenshot}"
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
