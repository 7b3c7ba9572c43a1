"""Bulk work without the cyclic garbage collector's passes over it.

The collector walks every tracked container object each time enough new ones survive, and
work that keeps many of them alive for a while sets it off again and again. Measured on 2
cores: importing torch and transformers and loading a model's code (several hundred thousand
long-lived objects) spent about 0.75 s of a 3.3 s start-up in the collector, and the
interpreter's last collection at exit took about 0.8 s more; tokenizing 50,000 prompts spent
15-35% of its time there.

- `collector_paused` is for a command's start-up: the collector is off until the command says
  the start-up is over, and then everything alive is frozen (`gc.freeze`). Frozen objects are
  still freed by reference counting as usual; only the search for reference cycles, at every
  later collection and at exit, skips them.
- `collector_off` is for a loop that builds lists and records but no reference cycles: the
  collector is off for the loop and comes back as it was.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[Callable[[], None]]:
    """Collector off until the yielded `started()` is called (or the block ends, normally or
    not): then everything alive is frozen and the collector runs again, for the real work.
    A collector the caller had switched off stays off."""
    was_enabled = gc.isenabled()

    def started() -> None:
        if was_enabled and not gc.isenabled():
            gc.freeze()
            gc.enable()

    gc.disable()
    try:
        yield started
    finally:
        started()


@contextmanager
def collector_off() -> Iterator[None]:
    """Collector off for the block; on again afterwards if it was on before."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
