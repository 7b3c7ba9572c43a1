"""Progress bars: live in a terminal, silent in a log file.

A bar redrawn with carriage returns turns a log (CI, `nohup`, `make demo > log`) into hundreds
of lines, so every bar of ours is made by `bar`, and `quiet_library_bars` turns off those of
`datasets`, `huggingface_hub` and `transformers` when stderr is not a terminal.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tqdm import tqdm

# Read by datasets and huggingface_hub (whose setting transformers follows) when first imported.
LIBRARY_BAR_SWITCHES = ("HF_DATASETS_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS")
USER_KEEPS_BARS = frozenset({"0", "FALSE", "NO", "OFF"})


def live() -> bool:
    """Whether bars are drawn: only when stderr, where tqdm writes, is a terminal."""
    return sys.stderr.isatty()


def bar(total: int | None, desc: str, unit: str = "it", **kw: Any) -> tqdm:
    """A tqdm bar over `total` units, drawn only in a terminal (`disable=True` in `kw` turns it
    off there too). A finished bar is cleared unless `leave=True`, so a terminal keeps one live
    bar per phase rather than a stack of full ones."""
    from tqdm.auto import tqdm  # here, so that `quiet_library_bars` costs the CLI no import

    disable = kw.pop("disable", False) or not live()
    return tqdm(total=total, desc=desc, unit=unit, disable=disable, leave=kw.pop("leave", False), **kw)


def quiet_library_bars() -> None:
    """Turn off the progress bars of datasets, huggingface_hub and transformers unless stderr is
    a terminal. A library not imported yet reads its environment switch when it is; one already
    imported is switched off through its own API. A switch the user set to "0" (bars on) is kept."""
    if live():
        return
    for switch in LIBRARY_BAR_SWITCHES:
        os.environ.setdefault(switch, "1")
    datasets_off, hub_off = (os.environ[switch].upper() not in USER_KEEPS_BARS for switch in LIBRARY_BAR_SWITCHES)
    if datasets_off and "datasets" in sys.modules:
        from datasets.utils import disable_progress_bars as disable_datasets_bars

        disable_datasets_bars()
    if hub_off and "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars as disable_hub_bars

        disable_hub_bars()
    if hub_off and "transformers" in sys.modules:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
