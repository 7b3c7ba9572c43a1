"""Bulk work without the cyclic garbage collector's passes over it.

The collector walks every tracked container object each time enough new ones survive, and
work that keeps many of them alive for a while sets it off again and again. Measured on 2
cores: importing torch and transformers and loading a model's code (several hundred thousand
long-lived objects) spent about 0.75 s of a 3.3 s start-up in the collector, and the
interpreter's last collection at exit took about 0.8 s more; tokenizing 50,000 prompts spent
15-35% of its time there.

- `collector_paused` is for a command's start-up: the collector is off until the command says
  the start-up is over, and then everything alive is frozen (`gc.freeze`) for the rest of the
  command. Frozen objects are still freed by reference counting as usual; only the search for
  reference cycles skips them, until the block ends and unfreezes them (a caller that goes on
  in the same process, such as a test, gets its usual heap back).
- `freeze_for_exit` is for the last line of a process: the interpreter's last collection at
  exit then skips everything.
- `collector_off` is for a loop that builds lists and records but no reference cycles: the
  collector is off for the loop and comes back as it was.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[Callable[[], None]]:
    """Collector off until the yielded `started()` is called: then everything alive is frozen
    and the collector runs again, for the real work. When the block ends (normally or not) the
    frozen objects are unfrozen. A collector the caller had switched off stays off."""
    was_enabled = gc.isenabled()
    frozen = gc.get_freeze_count()

    def started() -> None:
        if was_enabled and not gc.isenabled():
            gc.freeze()
            gc.enable()

    gc.disable()
    try:
        yield started
    finally:
        started()
        if gc.get_freeze_count() > frozen:
            gc.unfreeze()


def freeze_for_exit() -> None:
    """Freeze every object, so that the interpreter's last collection skips them: call it only
    when nothing but the process's exit follows."""
    gc.freeze()


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
