"""Score tokenized shards with a checkpoint: one Parquet part per shard, resumable.

Memory stays flat in the dataset size: one shard is in memory at a time, and each batch
keeps only the [batch, length, d] hidden states of the last layer's MLP input.

The leading tokens that all prompts of a shard share (template head, system prompt,
few-shot turns) are run once per shard and their key/value cache is reused by every batch,
which then runs only each prompt's own tokens. Where they share too little, or the model
keeps no reusable cache, every prompt is run whole; each part records which was done.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm

from gainrl_ops.core.progress import bar as progress_bar
from gainrl_ops.core.storage import write_parquet_atomic
from gainrl_ops.data.shards import Shard, shard_problem
from gainrl_ops.scoring import angles, capture
from gainrl_ops.scoring.angles import angle_concentration
from gainrl_ops.scoring.capture import (
    SharedPrefix,
    last_mlp_input,
    prefix_limit,
    run_prefix,
    suffix_mlp_input,
)
from gainrl_ops.scoring.config import DEFAULT_INTER_WEIGHT, ScoreConfig
from gainrl_ops.scoring.phases import Phases
from gainrl_ops.scoring.plan import ScoringPlan
from gainrl_ops.scoring.publish import (
    PART_KEY,
    PREFIX_KEY,
    SCORE_SCHEMA,
    ScoreContext,
    ScoreSummary,
    part_path,
    part_tag,
)

if TYPE_CHECKING:
    from transformers import PreTrainedModel

log = logging.getLogger(__name__)
_OTHER_INPUTS = "made from other shards, settings or scoring code"
_SCORE_NAMES = ("c_intra", "c_inter", "angle_score")


def code_version() -> str:
    """Digest of the source that defines a score; it changes exactly when the scoring code does."""
    source = "".join(inspect.getsource(f) for f in (angles, capture, score_batch, shared_prefix_length, shard_prefix))
    return hashlib.blake2b(source.encode(), digest_size=6).hexdigest()


def length_batches(lengths: Sequence[int], config: ScoreConfig) -> list[list[int]]:
    """Indices grouped into batches of similar length under the size and token budgets."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order.tolist():
        width = lengths[index]
        if current and (len(current) >= config.max_batch_size or width * (len(current) + 1) > config.max_batch_tokens):
            batches.append(current)
            current = []
        current.append(index)
    return batches + [current] if current else batches


@torch.inference_mode()
def score_batch(
    model: PreTrainedModel,
    input_ids: Sequence[Sequence[int]],
    system_spans: Sequence[tuple[int, int]],
    question_spans: Sequence[tuple[int, int]],
    inter_weight: float = DEFAULT_INTER_WEIGHT,
    prefix: SharedPrefix | None = None,
) -> angles.AngleScores:
    """Angle scores of one batch: right-padded so real tokens keep positions 0..n-1 and,
    under causal attention, never see a pad; the masks keep pads out of every sum.

    With `prefix` (run once by `run_prefix`; every prompt starts with its tokens and has
    tokens after them), only the tokens after it are run, on its key/value cache; the
    hidden states, masks and spans stay those of the whole prompts."""
    device = model.device
    start = 0 if prefix is None else len(prefix.input_ids)
    if prefix is not None and any(tuple(ids[:start]) != prefix.input_ids or len(ids) <= start for ids in input_ids):
        raise ValueError("every prompt must start with the shared prefix and have tokens after it")
    width = max(len(ids) for ids in input_ids)
    batch = torch.zeros((len(input_ids), width), dtype=torch.long)
    for row, ids in enumerate(input_ids):
        batch[row, : len(ids)] = torch.as_tensor(ids)
    positions = torch.arange(width)
    lengths = torch.tensor([len(ids) for ids in input_ids])
    attention = (positions[None, :] < lengths[:, None]).long()

    def span_mask(spans: Sequence[tuple[int, int]]) -> torch.Tensor:
        bounds = torch.tensor(spans).reshape(-1, 2)
        return (positions[None, :] >= bounds[:, :1]) & (positions[None, :] < bounds[:, 1:])

    if prefix is None:
        hidden = last_mlp_input(model, batch.to(device), attention.to(device))
    else:
        hidden = suffix_mlp_input(model, prefix, batch[:, start:].to(device), attention.to(device))
    return angle_concentration(hidden, span_mask(question_spans).to(device), span_mask(system_spans).to(device), inter_weight)


def shared_prefix_length(input_ids: Sequence[Sequence[int]], question_starts: Sequence[int]) -> int:
    """How many leading tokens all prompts have in common, ending at or before every
    question and leaving every prompt at least one token of its own."""
    limit = min(min(question_starts), min(len(ids) for ids in input_ids) - 1)
    first = np.asarray(input_ids[0][:limit])
    for ids in input_ids[1:]:
        if limit <= 0:
            break
        differ = np.flatnonzero(np.asarray(ids[:limit]) != first[:limit])
        limit = int(differ[0]) if differ.size else limit
    return max(limit, 0)


def shard_prefix(model: PreTrainedModel, input_ids: Sequence[Sequence[int]], question_starts: Sequence[int], config: ScoreConfig) -> tuple[SharedPrefix | None, str]:
    """The shared prefix of a shard's prompts, run once; or None and why every prompt is run whole."""
    cap, problem = prefix_limit(model)
    if problem:
        return None, problem
    length = shared_prefix_length(input_ids, question_starts)
    window = ""
    if cap is not None and length > cap:
        length, window = cap, f" within the {cap + 1}-token sliding window"
    if length < config.min_prefix_tokens:
        return None, f"the prompts share {length} leading tokens before the question{window}, fewer than min_prefix_tokens={config.min_prefix_tokens}"
    try:
        prefix = run_prefix(model, input_ids[0][:length])
    except (TypeError, AttributeError, NotImplementedError) as error:  # a forward that takes no DynamicCache
        return None, f"{type(model).__name__} cannot run on a key/value cache ({type(error).__name__}: {error})"
    if prefix is None:
        return None, f"{type(model).__name__} leaves no key/value cache for every decoder layer"
    return prefix, ""


def run_batches(
    lengths: Sequence[int], config: ScoreConfig, run: Callable[[list[int]], None], device: torch.device, where: str,
) -> None:
    """Call `run` on each batch of `length_batches` (lengths: the tokens each prompt runs).

    On out-of-memory, the token budget is halved (below the failed batch's padded tokens, so
    the batch shrinks), the allocator's cache is emptied, and the failed batch and the rest are
    split again under the new budget; the log says so. A prompt that fails alone is a one-line
    error naming `where`."""
    pending = length_batches(lengths, config)
    budget = config.max_batch_tokens
    while pending:
        batch = pending[0]
        if _fits(run, batch):
            pending.pop(0)
            continue
        # Here, not in the except clause, whose traceback still holds the failed batch's tensors.
        if device.type == "cuda":
            torch.cuda.empty_cache()
        width = max(lengths[i] for i in batch)
        if len(batch) == 1:
            raise ValueError(
                f"{where}: a single prompt ({width} tokens to run) does not fit in {device} memory; "
                "lower max_tokens or use a device with more memory"
            )
        budget = max(1, min(budget, width * len(batch)) // 2)
        rest = [index for group in pending for index in group]
        smaller = length_batches([lengths[i] for i in rest], replace(config, max_batch_tokens=budget))
        pending = [[rest[i] for i in group] for group in smaller]
        log.warning("%s: out of %s memory on %d prompts of up to %d tokens; token budget halved to %d, retrying",
                    where, device, len(batch), width, budget)


def _fits(run: Callable[[list[int]], None], batch: list[int]) -> bool:
    try:
        run(batch)
    except torch.OutOfMemoryError:  # torch.cuda.OutOfMemoryError is the same class
        return False
    return True


def _score_shard(model: PreTrainedModel, table: pa.Table, config: ScoreConfig, bar: tqdm, where: str) -> tuple[dict[str, np.ndarray], int, str]:
    """Scores of a shard's rows, the number of prefix tokens run once, and why none were."""
    columns = table.to_pydict()
    n = table.num_rows
    out = {name: np.full(n, np.nan) for name in _SCORE_NAMES}
    prefix, note = shard_prefix(model, columns["input_ids"], columns["question_start"], config)
    start = 0 if prefix is None else len(prefix.input_ids)
    # Scores stay on the model's device until the shard is done: no host round trip per batch.
    done: list[tuple[list[int], torch.Tensor]] = []

    def run(batch: list[int]) -> None:
        scores = score_batch(
            model,
            [columns["input_ids"][i] for i in batch],
            [(columns["system_start"][i], columns["system_end"][i]) for i in batch],
            [(columns["question_start"][i], columns["question_end"][i]) for i in batch],
            config.inter_weight,
            prefix,
        )
        done.append((batch, torch.stack([getattr(scores, name) for name in _SCORE_NAMES])))
        bar.update(len(batch))

    run_batches([length - start for length in columns["n_tokens"]], config, run, model.device, where)
    if done:
        rows = [index for batch, _ in done for index in batch]
        values = torch.cat([scores for _, scores in done], dim=1).cpu().double().numpy()  # MPS has no float64
        for name, column in zip(_SCORE_NAMES, values, strict=True):
            out[name][rows] = column
    return out, start, note


def _part_tag(shard: Shard, context: ScoreContext, config: ScoreConfig) -> bytes:
    return part_tag(shard, context, config.inter_weight, code_version())


def _part_problem(path: Path, tag: bytes, rows: int) -> str | None:
    """Why the part at `path` cannot be reused for this shard and context, or None."""
    if not path.exists():
        return "missing"
    try:
        meta = pq.read_metadata(path)
    except (pa.ArrowException, OSError) as error:
        return f"unreadable ({error})"
    if (meta.metadata or {}).get(PART_KEY) != tag:
        return _OTHER_INPUTS
    if meta.num_rows != rows:
        return f"{meta.num_rows} rows for a shard of {rows}"
    return None


def _log_problem(path: Path, problem: str) -> None:
    if problem == _OTHER_INPUTS:  # expected after a change of weight, shards or code
        log.info("%s: %s; rescoring", path, problem)
    elif problem != "missing":
        log.warning("%s: %s; rescoring", path, problem)


def score_shard(
    model: PreTrainedModel,
    shard: Shard,
    out_dir: Path,
    context: ScoreContext,
    config: ScoreConfig = ScoreConfig(),
    bar: tqdm | None = None,
    reuse_from: Path | None = None,
) -> bool:
    """Score one shard into its part file; returns False when a valid part was reused.

    A part is tagged with the shard digest, the context, the weight and the code version; a
    part in `out_dir` (an interrupted run) or in `reuse_from` (the published result) is kept
    or linked only if it reads, has that tag and the shard's row count, and the shard itself
    still matches its manifest. Anything else is rescored, and the log says which file and why.
    """
    if problem := shard_problem(shard):
        raise ValueError(f"{shard.path}: {problem}; materialize tokenized_shards (or rerun gainrl score) to rebuild it")
    path = part_path(out_dir, shard)
    tag = _part_tag(shard, context, config)
    bar = bar or tqdm(total=shard.rows, disable=True)
    problem = _part_problem(path, tag, shard.rows)
    if problem is None:
        bar.update(shard.rows)
        return False
    if reuse_from is not None:
        previous = part_path(reuse_from, shard)
        reuse_problem = _part_problem(previous, tag, shard.rows)
        if reuse_problem is None:
            path.unlink(missing_ok=True)
            path.parent.mkdir(parents=True, exist_ok=True)
            os.link(previous, path)
            bar.update(shard.rows)
            return False
        _log_problem(previous, reuse_problem)
    _log_problem(path, problem)
    table = pq.read_table(shard.path)
    scores, prefix_tokens, prefix_note = _score_shard(model, table, config, bar, str(shard.path))
    n = table.num_rows
    part = pa.table({
        "id": table.column("id"),
        **{name: pa.array(values) for name, values in scores.items()},
        "inter_weight": pa.array(np.full(n, config.inter_weight)),
        "n_tokens": table.column("n_tokens"),
        "question_tokens": pc.subtract(table.column("question_end"), table.column("question_start")),
        "system_tokens": pc.subtract(table.column("system_end"), table.column("system_start")),
        "truncated": table.column("truncated"),
        **{name: pa.array([value] * n, pa.string()) for name, value in asdict(context).items()},
        "code_version": pa.array([code_version()] * n, pa.string()),
    }, schema=SCORE_SCHEMA.with_metadata({PART_KEY: tag, PREFIX_KEY: json.dumps({"tokens": prefix_tokens, "note": prefix_note})}))
    write_parquet_atomic(part, path)
    return True


def score_part(model: PreTrainedModel, plan: ScoringPlan, index: int, config: ScoreConfig = ScoreConfig(), bar: tqdm | None = None) -> bool:
    """Score the plan's shard `index` into its staging folder (reusing a verified part of an
    interrupted run or of the published scores); False when a part was reused."""
    return score_shard(model, plan.shard(index), plan.staging, plan.context, config, bar, reuse_from=plan.final)


def score_and_publish(
    model: PreTrainedModel, plan: ScoringPlan, config: ScoreConfig = ScoreConfig(), progress: bool = True, phases: Phases | None = None,
) -> ScoreSummary:
    """Score and publish a checkpoint's scores: the one scoring path of the CLI, the benchmarks
    and (one step per call, `plan.sweep`, `score_part`, `plan.publish`) the Dagster assets.

    Temporary files of interrupted runs are removed, every shard is scored into staging
    (verified parts are reused), then the folder is published in one swap. `phases`, when
    given, gets the seconds of "score" (the parts) and "write" (compacting and publishing)."""
    phases = phases or Phases()
    plan.sweep()
    with phases.phase("score"), progress_bar(plan.shards.rows, f"scoring {plan.model}", unit="prompt", disable=not progress) as bar:
        written = sum(score_part(model, plan, index, config, bar) for index in range(len(plan.shards.shards)))
    with phases.phase("write"):
        return plan.publish(written)
