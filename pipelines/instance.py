"""The Dagster instance of `make demo` and `make ui`: `$DAGSTER_HOME` with the project's `dagster.yaml`.

Without a `dagster.yaml` Dagster warns at every start that it found no instance configuration,
and on the first start its telemetry prints a banner. The file written here switches
telemetry off; a `dagster.yaml` already there (the user's own) is left as it is.
`python -m pipelines.instance` writes it, for `make ui` before `dagster dev`.
"""

import os
from pathlib import Path

from gainrl_ops.core.storage import storage_root, write_text_atomic

HOME_ENV = "DAGSTER_HOME"
CONFIG_FILE = "dagster.yaml"
CONFIG = """\
# Written by gainrl (pipelines/instance.py) for `make demo` and `make ui`; edit freely, it is
# not overwritten. Telemetry is off: set `enabled: true` to send Dagster its anonymous usage data.
telemetry:
  enabled: false
"""


def dagster_home() -> Path:
    """`$DAGSTER_HOME`, else `dagster/` in the storage root (where the Makefile puts it)."""
    return Path(os.environ.get(HOME_ENV) or storage_root() / "dagster").expanduser().resolve()


def prepare_instance_home() -> Path:
    """Create the instance folder with its `dagster.yaml` (once) and point `$DAGSTER_HOME` at
    it, so that `DagsterInstance.get()` in this process, and any process it starts, opens it."""
    home = dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / CONFIG_FILE).exists():
        write_text_atomic(CONFIG, home / CONFIG_FILE)
    os.environ[HOME_ENV] = str(home)
    return home


if __name__ == "__main__":
    prepare_instance_home()
