"""The Dagster UI, in a real browser: `dagster dev -w workspace.yaml` serves the asset graph,
the jobs, the sensor and the schedule, and a run launched from an asset's page succeeds.

Needs Debian's chromium (`apt-get install -y chromium`, giving /usr/bin/chromium) and the
`playwright` Python package; `playwright install` is never needed. Skips cleanly without them.
A full-page screenshot of the asset graph is written to `$GAINRL_HOME/screenshots/asset_graph.png`
and, when `GAINRL_SCREENSHOT_DIR` is set, copied there too.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipelines.instance import CONFIG as INSTANCE_CONFIG

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
RAW_DATASET_URL = "/assets/raw_dataset"

SERVER_START_TIMEOUT_S = 120  # /server_info answers ~10 s after start; far longer on a loaded 2-core box
UI_TIMEOUT_MS = 90_000  # the code location loads after the webserver answers
RUN_TIMEOUT_MS = 180_000  # a queued run: the daemon dequeues it, then a run worker and a step process start
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


@dataclass(frozen=True)
class Server:
    base: str
    log: Path
    home: Path  # its storage root


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One `dagster dev` for the module, on a Dagster home with the project's dagster.yaml and
    its own storage root, on the embedded default (no test builds a model through it);
    stopped with its whole process group."""
    dagster = Path(sys.executable).parent / "dagster"
    assert dagster.exists(), f"no dagster executable next to {sys.executable}"
    root = tmp_path_factory.mktemp("ui")
    dagster_home, gainrl_home = root / "dagster_home", root / "gainrl_home"
    dagster_home.mkdir()
    gainrl_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(INSTANCE_CONFIG)
    log = root / "dagster_dev.log"
    port = _free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "GAINRL_HOME": str(gainrl_home),
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
    try:
        _wait_for_server(proc, f"http://127.0.0.1:{port}", log)
        print(f"\n/server_info answered after {time.monotonic() - started:.1f} s")
        yield Server(f"http://127.0.0.1:{port}", log, gainrl_home)
    except BaseException:
        print(f"dagster dev log tail ({log}):\n{_log_tail(log)}")
        raise
    finally:
        _stop_group(proc, pgid)
    assert proc.returncode is not None, "dagster dev still running"
    assert not _live_group_members(pgid), f"server processes outlived the test: {_live_group_members(pgid)}"
    print(f"dagster dev exited with {proc.returncode}; total {time.monotonic() - started:.1f} s")


@contextlib.contextmanager
def _page(server: Server, tmp_path: Path) -> Iterator:
    """A page of headless Chromium; on failure, a screenshot of it and the server's log tail."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), headless=True, args=CHROMIUM_ARGS)
        page = None
        try:
            context = browser.new_context(viewport={"width": 1600, "height": 1000})
            context.add_init_script(DISMISS_NUX)
            context.set_default_timeout(UI_TIMEOUT_MS)
            page = context.new_page()
            yield page
        except BaseException:  # pytest-timeout's Failed is no Exception
            failure = tmp_path / "failure.png"
            try:
                assert page is not None, "no page was opened"
                page.screenshot(path=str(failure), full_page=True, timeout=10_000)
                print(f"page {page.url} at failure: {failure}")
            except Exception as exc:  # noqa: BLE001 - best effort, the original error matters
                print(f"no failure screenshot: {exc!r}")
            print(f"dagster dev log tail ({server.log}):\n{_log_tail(server.log)}")
            raise
        finally:
            browser.close()


def test_ui_shows_asset_graph_jobs_sensor_and_schedule(server: Server, tmp_path: Path, gainrl_home: Path) -> None:
    screenshot = gainrl_home / "screenshots" / "asset_graph.png"
    started = time.monotonic()
    with _page(server, tmp_path) as page:
        # The global lineage knows the group.
        page.goto(server.base + GLOBAL_LINEAGE_URL, wait_until="domcontentloaded")
        page.get_by_text("Global asset lineage").first.wait_for(state="visible")
        page.locator("svg foreignObject").get_by_text(GROUP, exact=True).first.wait_for(state="visible")

        # The group's asset graph: every node of the chain, drawn in the graph's SVG.
        page.goto(server.base + ASSET_GRAPH_URL, wait_until="domcontentloaded")
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

        page.goto(server.base + AUTOMATION_URL, wait_until="domcontentloaded")
        for name in AUTOMATIONS:
            page.get_by_text(name, exact=True).first.wait_for(state="visible")

        page.goto(server.base + JOBS_URL, wait_until="domcontentloaded")
        for name in JOBS:
            page.get_by_text(name, exact=True).first.wait_for(state="visible")

    assert screenshot.exists() and screenshot.stat().st_size > 10_000, f"screenshot missing or trivial: {screenshot}"
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_materialize_from_the_ui_succeeds_and_the_asset_shows_the_run(server: Server, tmp_path: Path) -> None:
    """Materialize raw_dataset (the embedded dataset, nothing to configure) from its asset page,
    follow the launched run to success, then find the run and its metadata on the asset page."""
    from gainrl_ops.core.layout import Layout
    from gainrl_ops.data.sources import DatasetSource
    from gainrl_ops.data.versions import require_loaded

    started = time.monotonic()
    with _page(server, tmp_path) as page:
        page.goto(server.base + RAW_DATASET_URL, wait_until="domcontentloaded")
        _dismiss_nux(page)
        # The button's accessible name includes its icon's, so match the visible text.
        page.locator("button").filter(has_text=re.compile(r"^\s*Materialize\s*$")).first.click()
        page.get_by_text("Launched run").first.wait_for(state="visible")
        page.get_by_role("link", name="View", exact=True).first.click()
        page.wait_for_url("**/runs/*")
        run_id = page.url.split("?")[0].rsplit("/", 1)[-1]
        page.get_by_text("Success", exact=True).first.wait_for(state="visible", timeout=RUN_TIMEOUT_MS)
        page.get_by_text("RUN_SUCCESS", exact=True).first.wait_for(state="visible")
        print(f"run {run_id} succeeded after {time.monotonic() - started:.1f} s")

        # The asset's events: materialized in that run, with the version the run wrote as metadata.
        version = require_loaded(Layout(server.home), DatasetSource.name)
        page.goto(server.base + RAW_DATASET_URL + "?view=events", wait_until="domcontentloaded")
        page.get_by_text(f"Materialized in run {run_id[:8]}").first.wait_for(state="visible")
        page.get_by_text("dataset_version", exact=True).first.wait_for(state="visible")
        page.get_by_text(version, exact=True).first.wait_for(state="visible")
