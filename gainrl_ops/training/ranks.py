"""What the processes of a data-parallel run (`accelerate launch`, `torchrun`) agree on.

TRL runs the same sampler on every rank and gives each rank a slice of every generation
batch, so the curriculum is one only if every rank moves mu by the same feedback and then
draws the same prompts. The feedback is reduced over all processes before any rank uses it,
and each epoch's selection is checked against rank 0's. Everything goes through accelerate's
process state, the one the trainer's `accelerator` runs on (gloo on CPU, NCCL on GPUs); in a
plain one-process run each function is the identity and costs nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list, gather_object, reduce


def is_main_process() -> bool:
    return PartialState().is_main_process


def wait_for_everyone() -> None:
    """A barrier: no rank goes on before every rank got here (the main process has written)."""
    PartialState().wait_for_everyone()


def sum_over_processes(values: Sequence[float]) -> list[float]:
    """Element-wise sums over all processes, in float64."""
    state = PartialState()
    if state.num_processes == 1:
        return [float(v) for v in values]
    return reduce(torch.tensor(values, dtype=torch.float64, device=state.device), reduction="sum").cpu().tolist()


def gather_from_processes(values: list[Any]) -> list[Any]:
    """Every process's `values`, concatenated in process order, on every process."""
    if PartialState().num_processes == 1:
        return list(values)
    return gather_object(list(values))


def from_main_process(value: Any) -> Any:
    """The main process's `value`, on every process."""
    if PartialState().num_processes == 1:
        return value
    return broadcast_object_list([value], from_process=0)[0]


def selection_digest(ranks: np.ndarray) -> str:
    return hashlib.sha256(np.asarray(ranks, dtype=np.int64).tobytes()).hexdigest()[:16]


def check_same_selection(epoch: int, ranks: np.ndarray) -> None:
    """Fail, on the rank that differs, when its selection for `epoch` is not rank 0's: the
    groups of one generation batch would mix prompts."""
    state = PartialState()
    mine = selection_digest(ranks)
    main = from_main_process(mine)
    if mine != main:
        raise RuntimeError(
            f"epoch {epoch}: process {state.process_index} selected other prompts than process 0 "
            f"(digest {mine} vs {main}); every process must run the same sampler, seed and feedback"
        )
