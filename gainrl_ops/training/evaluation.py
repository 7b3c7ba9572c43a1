"""Greedy accuracy of a checkpoint on held-out problems, and the batched decoding loop it shares
with the pass-rate estimate (which samples through the same loop)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
import torch
from transformers import LogitsProcessorList, PreTrainedModel, PreTrainedTokenizerBase

from gainrl_ops.core.progress import bar
from gainrl_ops.data.answers import extract_answer
from gainrl_ops.data.prompts import PromptConfig, render_text
from gainrl_ops.training.rewards import correctness_reward


def completion_mask(completion_ids: torch.Tensor, eos_ids: Sequence[int]) -> torch.Tensor:
    """1 up to and including the first end-of-sequence token of each row, 0 after it."""
    is_eos = torch.isin(completion_ids, torch.tensor(list(eos_ids), device=completion_ids.device))
    before = torch.cumsum(is_eos, dim=1) - is_eos.long()
    return (before == 0).to(torch.float32)


def eos_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Every id that ends a completion: the generation config's and the tokenizer's."""
    configured = model.generation_config.eos_token_id
    ids = configured if isinstance(configured, list) else [configured]
    return sorted({i for i in [*ids, tokenizer.eos_token_id] if i is not None})


@dataclass(frozen=True)
class Decoded:
    """Completions in the order of the prompts decoded: their text, their generated tokens (up to
    and including the first end token) and their seconds (each `generate` call's wall time shared
    evenly among the rows of its batch)."""

    texts: list[str]
    tokens: list[int]
    seconds: list[float]


# Logits processors for one batch, given the positions (in the prompts decoded) of its rows.
BatchProcessors = Callable[[list[int]], LogitsProcessorList]


@torch.no_grad()
def decode(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    ids: Sequence[Sequence[int]],
    batch_size: int = 128,
    max_new_tokens: int = 64,
    processors: BatchProcessors | None = None,
    desc: str = "greedy decoding",
    **generate: Any,
) -> Decoded:
    """Greedy completions of tokenized prompts, in the order of `ids`; `processors` (e.g. a
    sampler) and `generate` keywords change how each token is chosen.

    Prompts are batched by length, with left padding so every prompt ends at the same column:
    a batch carries few pads, and its completions, as alike as their prompts, tend to end
    together, so `generate` stops early more often.
    """
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    texts: list[str] = [""] * len(ids)
    tokens: list[int] = [0] * len(ids)
    seconds: list[float] = [0.0] * len(ids)
    eos = eos_token_ids(model, tokenizer)
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        for start in bar(None, desc, unit="batch", iterable=range(0, len(order), batch_size)):
            rows = order[start : start + batch_size]
            enc = tokenizer.pad({"input_ids": [list(ids[i]) for i in rows]}, padding=True, return_tensors="pt").to(model.device)
            began = time.perf_counter()
            generated = model.generate(
                **enc, do_sample=False, max_new_tokens=max_new_tokens, logits_processor=processors(rows) if processors else None, **generate
            )
            share = (time.perf_counter() - began) / len(rows)
            completions = generated[:, enc["input_ids"].shape[1] :]
            counts = completion_mask(completions, eos).sum(dim=1).tolist()
            for row, text, count in zip(rows, tokenizer.batch_decode(completions, skip_special_tokens=True), counts):
                texts[row], tokens[row], seconds[row] = text, int(count), share
    finally:
        tokenizer.padding_side = side
    return Decoded(texts, tokens, seconds)


def greedy_completions(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    questions: list[str],
    prompt: PromptConfig,
    batch_size: int = 128,
    max_new_tokens: int = 64,
) -> list[str]:
    """Greedy completions of the rendered questions, in the order of `questions`."""
    texts = [render_text(tokenizer, q, prompt) for q in questions]
    ids = tokenizer(texts, add_special_tokens=tokenizer.chat_template is None)["input_ids"]
    return decode(model, tokenizer, ids, batch_size, max_new_tokens).texts


def greedy_accuracy(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    problems: list[tuple[str, str]],
    prompt: PromptConfig,
    batch_size: int = 128,
    max_new_tokens: int = 64,
) -> float:
    """Fraction of (question, answer) pairs whose greedy completion has the right final answer."""
    completions = greedy_completions(model, tokenizer, [q for q, _ in problems], prompt, batch_size, max_new_tokens)
    return sum(correctness_reward(c, a) for c, (_, a) in zip(completions, problems)) / len(problems)


def evaluate_checkpoint(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    problems: pl.DataFrame,
    prompt: PromptConfig,
    checkpoint: str,
    max_new_tokens: int = 64,
) -> pl.DataFrame:
    """One row per held-out problem (columns id, problem, answer): the greedy completion,
    its extracted answer and whether it is correct."""
    completions = greedy_completions(model, tokenizer, problems["problem"].to_list(), prompt, max_new_tokens=max_new_tokens)
    return problems.select("id", "answer").with_columns(
        checkpoint=pl.lit(checkpoint),
        completion=pl.Series(completions, dtype=pl.String),
        predicted=pl.Series([extract_answer(c) for c in completions], dtype=pl.String),
        correct=pl.Series([bool(correctness_reward(c, a)) for c, a in zip(completions, problems["answer"].to_list())]),
    )
