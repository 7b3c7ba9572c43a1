"""Start-up and bulk work run without the cyclic collector, which comes back as it was."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from gainrl_ops.core.collector import collector_off, collector_paused


@pytest.fixture(autouse=True)
def collector_restored() -> Iterator[None]:
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    if enabled:
        gc.enable()
    else:
        gc.disable()


def test_start_up_runs_without_the_collector_and_the_work_with_it() -> None:
    gc.enable()
    with collector_paused() as started:
        assert not gc.isenabled()
        built = [[i] for i in range(1000)]  # what imports leave behind
        started()
        assert gc.isenabled()
        assert gc.get_freeze_count() >= len(built)
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1, "cycles made after the start-up are still collected"
    assert gc.get_freeze_count() == 0, "the caller gets its heap back when the command is done"


def test_the_collector_comes_back_when_the_start_up_fails() -> None:
    gc.enable()
    with pytest.raises(OSError, match="no such model"), collector_paused():
        raise OSError("no such model")
    assert gc.isenabled()


def test_a_collector_switched_off_by_the_caller_stays_off() -> None:
    gc.disable()
    with collector_paused() as started:
        started()
    assert not gc.isenabled()
    assert gc.get_freeze_count() == 0


@pytest.mark.parametrize("enabled", [True, False])
def test_a_loop_runs_without_the_collector_and_leaves_it_as_it_was(enabled: bool) -> None:
    if enabled:
        gc.enable()
    else:
        gc.disable()
    with pytest.raises(KeyError), collector_off():
        assert not gc.isenabled()
        raise KeyError("shard 3")
    assert gc.isenabled() is enabled
    assert gc.get_freeze_count() == 0, "nothing is frozen: the loop's objects are freed as usual"
