"""A training run on N processes: `accelerate launch` starts this module on each of them.

The caller writes the run's inputs into a folder on shared storage (`write_inputs`), then runs
`launch_command`: accelerate starts `python -m gainrl_ops.training.launch FOLDER` on every
process, and each calls `train_from_store`, the same function a one-process run calls in the
caller's own process. The main process writes the tables, checkpoints and curve; the caller
reads them back (`read_result`). Accelerate is the launcher; nothing here starts processes
by itself. On other nodes, run the same command with their own `--config_file` (machine rank).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import polars as pl

from gainrl_ops.core.collector import collector_paused
from gainrl_ops.core.layout import Layout
from gainrl_ops.core.storage import write_parquet_atomic, write_text_atomic
from gainrl_ops.data.prompts import PromptConfig
from gainrl_ops.scoring.checkpoints import CheckpointRecord, LocalCheckpointStore
from gainrl_ops.training.config import TrainingRunConfig

INPUTS = "launch.json"
RANKED = "ranked.parquet"
HELD_OUT = "held_out.parquet"
LOG = "launch.log"


def write_inputs(
    folder: Path, run: TrainingRunConfig, store: LocalCheckpointStore, base: CheckpointRecord,
    ranked: pl.DataFrame, prompt: PromptConfig, layout: Layout, held_out: list[tuple[str, str]],
) -> Path:
    """Everything `train_from_store` takes, as files; the JSON last, so a folder is complete once it is there."""
    folder.mkdir(parents=True, exist_ok=True)
    write_parquet_atomic(ranked.to_arrow(), folder / RANKED)
    write_parquet_atomic(pl.DataFrame(held_out, schema=["problem", "answer"], orient="row").to_arrow(), folder / HELD_OUT)
    return write_text_atomic(json.dumps({
        "run": asdict(run), "store": str(store.root), "settle_seconds": store.settle_seconds, "base": asdict(base),
        "prompt": asdict(prompt), "layout": str(layout.root),
    }), folder / INPUTS)


def launch_command(run: TrainingRunConfig, folder: Path) -> list[str]:
    """`accelerate launch` of this module on `run.num_processes` processes. Without a config
    file, `--multi_gpu` is accelerate's data-parallel launch (torchrun; gloo where there is no GPU)."""
    config = ["--config_file", run.accelerate_config] if run.accelerate_config else ["--multi_gpu", "--num_machines", "1"]
    return [
        sys.executable, "-m", "accelerate.commands.launch", *config, "--num_processes", str(run.num_processes),
        "-m", "gainrl_ops.training.launch", str(folder),
    ]


def read_result(run: TrainingRunConfig, layout: Layout):
    """The tables the main process wrote, as `train_run` returns them, and the curve."""
    from gainrl_ops.training.trainer import TrainingResult

    epochs, selections = pl.read_parquet(layout.epochs(run.name)), pl.read_parquet(layout.selections(run.name))
    checkpoints = [p for p in epochs["checkpoint_path"].to_list() if p]
    return TrainingResult(epochs, selections, pl.read_parquet(layout.rollouts(run.name)), checkpoints, layout.run_dir(run.name)), layout.run_curve(run.name)


def train_on_processes(
    run: TrainingRunConfig, store: LocalCheckpointStore, base: CheckpointRecord, ranked: pl.DataFrame,
    prompt: PromptConfig, layout: Layout, held_out: list[tuple[str, str]],
):
    """`train_from_store` on `run.num_processes` processes, or in this process for one."""
    if run.num_processes == 1 and not run.accelerate_config:
        with collector_paused() as started:  # TRL's import: about 1 s less of a 5 s import, see core/collector.py
            from gainrl_ops.training.trainer import train_from_store

            started()
            return train_from_store(run, store, base, ranked, prompt, layout, held_out)
    folder = write_inputs(layout.run_launch(run.name), run, store, base, ranked, prompt, layout, held_out).parent
    command = launch_command(run, folder)
    with (folder / LOG).open("w") as log:
        code = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise RuntimeError(f"training run {run.name!r} on {run.num_processes} processes failed (exit {code}); its output: {folder / LOG}")
    return read_result(run, layout)


def read_inputs(folder: Path) -> tuple:
    """The arguments of `train_from_store` that `write_inputs` wrote, in its order."""
    spec = json.loads((Path(folder) / INPUTS).read_text())
    return (
        TrainingRunConfig(**spec["run"]), LocalCheckpointStore(Path(spec["store"]), spec["settle_seconds"]),
        CheckpointRecord(**spec["base"]), pl.read_parquet(Path(folder) / RANKED),
        PromptConfig(**{**spec["prompt"], "few_shot": tuple(map(tuple, spec["prompt"]["few_shot"]))}),
        Layout(Path(spec["layout"])), list(pl.read_parquet(Path(folder) / HELD_OUT).iter_rows()),
    )


def main(argv: list[str]) -> None:
    """One process of a launched run: `python -m gainrl_ops.training.launch FOLDER`."""
    # The epoch lines the main process logs are the launch log's progress (as the CLI shows them).
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with collector_paused() as started:  # TRL's import, as in train_on_processes
        from gainrl_ops.training.trainer import train_from_store

        started()
        train_from_store(*read_inputs(Path(argv[0])))


if __name__ == "__main__":
    main(sys.argv[1:])
