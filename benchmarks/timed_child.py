"""Run a Python program as `python -m MODULE ...` or `python FILE ...` would, and report its peak memory.

    python benchmarks/timed_child.py REPORT.json [--time MODULE:FUNCTION] -- (-m MODULE | FILE) ARGS...

Imports only the standard library, so the program's own imports are all that is timed.
At exit it writes REPORT.json with the process's peak resident memory (VmHWM; not
`ru_maxrss`, which survives `exec`), the `time.time()` at which the program started and
ended (so a parent can split the wall clock it saw into phases), and, with `--time`, each call of MODULE.FUNCTION: its
seconds, the RSS when it started and its own peak (VmHWM is reset through
/proc/self/clear_refs at the call, and the peak before it is kept). The function is wrapped
right after MODULE is first imported, wherever that happens, so import order is unchanged.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import json
import runpy
import sys
import time
from pathlib import Path


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class _WrapAfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: hands the real spec back with a loader that wraps one function."""

    def __init__(self, module: str, function: str, report: dict) -> None:
        self.module, self.function, self.report = module, function, report

    def find_spec(self, name, path, target=None):
        if name != self.module:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            setattr(module, self.function, self._timed(getattr(module, self.function)))

        spec.loader.exec_module = exec_module
        return spec

    def _timed(self, function):
        calls = self.report["calls"]

        def timed(*args, **kwargs):
            call = {"peak_before_kib": _status_kib("VmHWM"), "peak_reset": _reset_peak(), "rss_start_kib": _status_kib("VmRSS")}
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                call["seconds"] = time.perf_counter() - started
                call["peak_kib"] = _status_kib("VmHWM")
                calls.append(call)

        return timed


def main() -> int:
    args = sys.argv[1:]
    split = args.index("--")
    report_path, options, program = Path(args[0]), args[1:split], args[split + 1 :]
    report: dict = {"calls": [], "exit_code": None}
    if options[:1] == ["--time"]:
        module, function = options[1].split(":")
        report["timed"] = options[1]
        sys.meta_path.insert(0, _WrapAfterImport(module, function, report))
    code = 1  # unless the program returns or exits with another code
    report["program_started_at"] = time.time()
    try:
        # sys.path[0] as the interpreter sets it: the working directory for -m, else the file's folder.
        if program[0] == "-m":
            sys.argv, sys.path[0] = [program[1], *program[2:]], ""
            runpy.run_module(program[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv, sys.path[0] = program, str(Path(program[0]).resolve().parent)
            runpy.run_path(program[0], run_name="__main__")
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    finally:
        report["program_ended_at"] = time.time()
        # Peak of the whole process: before a reset, or since it.
        report["peak_kib"] = max([_status_kib("VmHWM")] + [c["peak_before_kib"] for c in report["calls"]])
        report["exit_code"] = code
        report_path.write_text(json.dumps(report))
    return code


if __name__ == "__main__":
    sys.exit(main())
