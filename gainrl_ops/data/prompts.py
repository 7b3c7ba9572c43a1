"""Render problems into model prompts and locate the system-prompt and question tokens.

The spans are derived from the rendered text, never from hard-coded token counts: the
character range of each part is found in the rendered string, then mapped to tokens
through the tokenizer's offset mapping. This is correct for any tokenizer with a chat
template, and for a plain-text layout when the tokenizer has none.
"""

from __future__ import annotations

import bisect
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from gainrl_ops.core.fingerprint import fingerprint_json
from gainrl_ops.data.errors import DatasetError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

DEFAULT_SYSTEM_PROMPT = (
    "You are a careful math tutor. Solve the problem step by step, "
    "then write the final answer after ####."
)
# Prompts per shard, i.e. per score part and per parallel scoring step (not part of the
# prompt fingerprint: the same prompts in other shard sizes score the same).
SHARD_SIZE = 1024
# Placeholders that no template rewrites and no real text contains; used once per prompt to
# learn where the template puts the system prompt and the question.
_SYSTEM_MARK = "\ue000gainrl-system\ue000"
_QUESTION_MARK = "\ue001gainrl-question\ue001"


@dataclass(frozen=True)
class PromptConfig:
    """How a problem becomes a prompt.

    system_prompt: the system turn; "" for none (then the inter concentration is 0).
    few_shot: (question, answer) pairs rendered as earlier user/assistant turns.
    max_tokens: longer prompts are cut at this many tokens and flagged `truncated`.
    """

    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    few_shot: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    max_tokens: int = 1024


def load_few_shot(path: str | Path) -> tuple[tuple[str, str], ...]:
    """Few-shot turns from a JSON list of {"question": ..., "answer": ...} objects (other keys
    are ignored), in file order, for `PromptConfig.few_shot`. A bad entry raises a
    `DatasetError` naming the file, its index and the field."""
    file = str(path)
    try:
        entries = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DatasetError(file, f"invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}") from None
    except UnicodeDecodeError as error:
        raise DatasetError(file, f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    if not isinstance(entries, list):
        raise DatasetError(file, f'expected a JSON list of {{"question", "answer"}} objects, got {type(entries).__name__}')
    shots = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise DatasetError(file, f'not an object with "question" and "answer" ({type(entry).__name__})', index)
        pair = []
        for name in ("question", "answer"):
            value = entry.get(name)
            if not isinstance(value, str) or not value.strip():
                reason = "missing" if name not in entry else f"must be non-empty text, got {type(value).__name__} {value!r}"[:120]
                raise DatasetError(file, reason, index, name)
            pair.append(value)
        shots.append((pair[0], pair[1]))
    return tuple(shots)


@dataclass(frozen=True)
class RenderedPrompt:
    """A tokenized prompt with half-open token spans [start, end) of its two parts."""

    text: str
    input_ids: list[int]
    system_span: tuple[int, int]
    question_span: tuple[int, int]
    truncated: bool


def chat_messages(question: str, config: PromptConfig) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": config.system_prompt}] if config.system_prompt else []
    for q, a in config.few_shot:
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return messages + [{"role": "user", "content": question}]


def _plain_text(question: str, config: PromptConfig) -> str:
    head = f"{config.system_prompt}\n\n" if config.system_prompt else ""
    shots = "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in config.few_shot)
    return f"{head}{shots}Question: {question}\nAnswer:"


def render_text(tokenizer: PreTrainedTokenizerBase, question: str, config: PromptConfig) -> str:
    """The prompt text: the tokenizer's chat template with a generation prompt, else plain text."""
    if tokenizer.chat_template is None:
        return _plain_text(question, config)
    return tokenizer.apply_chat_template(
        chat_messages(question, config), tokenize=False, add_generation_prompt=True
    )


def _char_spans(
    tokenizer: PreTrainedTokenizerBase, text: str, question: str, config: PromptConfig
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Character ranges of the system prompt and the question inside `text`.

    The template is rendered once more with placeholders; everything before a placeholder
    is template text that does not depend on the content, so the placeholder offsets give
    the real offsets. Templates that rewrite content (e.g. strip it) fall back to a search.
    """
    marked = render_text(tokenizer, _QUESTION_MARK, PromptConfig(
        system_prompt=_SYSTEM_MARK if config.system_prompt else "",
        few_shot=config.few_shot,
        max_tokens=config.max_tokens,
    ))
    system = config.system_prompt
    sys_start = marked.find(_SYSTEM_MARK) if system else 0
    q_mark = marked.find(_QUESTION_MARK)
    if (system and sys_start < 0) or q_mark < 0:
        raise ValueError("the chat template drops the system prompt or the question")
    shift = len(system) - len(_SYSTEM_MARK) if system and sys_start < q_mark else 0
    q_start = q_mark + shift
    if system and text[sys_start : sys_start + len(system)] != system:
        sys_start = text.find(system.strip())
        system = system.strip()
    if text[q_start : q_start + len(question)] != question:
        question = question.strip()
        q_start = text.rfind(question)
    if sys_start < 0 or q_start < 0:
        raise ValueError("the chat template rewrites the system prompt or the question text")
    sys_span = (sys_start, sys_start + len(system)) if system else (0, 0)
    return sys_span, (q_start, q_start + len(question))


def _token_span(offsets: list[tuple[int, int]], chars: tuple[int, int]) -> tuple[int, int]:
    """Half-open range of the tokens whose characters overlap `chars`; (0, 0) if none."""
    a, b = chars
    hits = [i for i, (s, e) in enumerate(offsets) if e > s and s < b and e > a]
    return (hits[0], hits[-1] + 1) if hits else (0, 0)


def render_prompt(
    tokenizer: PreTrainedTokenizerBase, question: str, config: PromptConfig
) -> RenderedPrompt:
    """Render `question`, tokenize it, and map the system and question parts to token spans."""
    text = render_text(tokenizer, question, config)
    sys_chars, q_chars = _char_spans(tokenizer, text, question, config)
    # A chat template writes its own special tokens (BOS included); plain text needs them added.
    enc = tokenizer(
        text,
        add_special_tokens=tokenizer.chat_template is None,
        return_offsets_mapping=True,
    )
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    return _rendered(text, ids, _token_span(offsets, sys_chars), _token_span(offsets, q_chars), config.max_tokens)


def _rendered(text: str, ids: list[int], sys_span: tuple[int, int], q_span: tuple[int, int], max_tokens: int) -> RenderedPrompt:
    """The prompt cut to `max_tokens` (flagged `truncated`), its spans clipped with it."""
    if len(ids) <= max_tokens:
        return RenderedPrompt(text, ids if isinstance(ids, list) else list(ids), sys_span, q_span, False)
    n = max_tokens
    return RenderedPrompt(text, list(ids[:n]), (min(sys_span[0], n), min(sys_span[1], n)), (min(q_span[0], n), min(q_span[1], n)), True)


def _template_pieces(tokenizer: PreTrainedTokenizerBase, config: PromptConfig) -> tuple[str, str] | None:
    """(text before the question, text after it) when the template puts the question in
    verbatim (no trim or escaping), checked on a question with surrounding spaces; else None."""
    marked = render_text(tokenizer, _QUESTION_MARK, config)
    if marked.count(_QUESTION_MARK) != 1:
        return None
    prefix, suffix = marked.split(_QUESTION_MARK)
    probe = f" {_QUESTION_MARK}\n "
    return (prefix, suffix) if render_text(tokenizer, probe, config) == prefix + probe + suffix else None


def _span_of(starts: tuple[int, ...], ends: list[int], chars: tuple[int, int]) -> tuple[int, int]:
    """`_token_span` on sorted offsets: the tokens whose characters overlap `chars`. Only the
    first and the last non-empty token of the range are looked for, not every one in it."""
    a, b = chars
    low, high = bisect.bisect_right(ends, a), bisect.bisect_left(starts, b)
    first = next((i for i in range(low, high) if ends[i] > starts[i]), None)
    if first is None:
        return (0, 0)
    last = next(i for i in range(high - 1, first - 1, -1) if ends[i] > starts[i])
    return (first, last + 1)


def render_prompts(tokenizer: PreTrainedTokenizerBase, questions: list[str], config: PromptConfig) -> list[RenderedPrompt]:
    """`render_prompt` for many questions: the template is rendered once and the batch is
    tokenized in one call. Templates that rewrite the question fall back to `render_prompt`."""
    pieces = _template_pieces(tokenizer, config) if questions else None
    if pieces is None:
        return [render_prompt(tokenizer, q, config) for q in questions]
    prefix, suffix = pieces
    texts = [prefix + q + suffix for q in questions]
    system, _ = _char_spans(tokenizer, texts[0], questions[0], config)
    if system[1] > len(prefix):
        return [render_prompt(tokenizer, q, config) for q in questions]
    # Only ids and offsets are read: no attention masks or type ids to build (15% of converting each encoding).
    encoded = tokenizer(texts, add_special_tokens=tokenizer.chat_template is None, return_offsets_mapping=True,
                        return_attention_mask=False, return_token_type_ids=False)
    out = []
    for text, question, ids, offsets in zip(texts, questions, encoded["input_ids"], encoded["offset_mapping"], strict=True):
        # Offsets are sorted; a token's end can only grow, so both searches are bisections.
        starts, raw_ends = zip(*offsets) if offsets else ((), ())
        ends = list(itertools.accumulate(raw_ends, max))
        q_chars = (len(prefix), len(prefix) + len(question))
        out.append(_rendered(text, ids, _span_of(starts, ends, system), _span_of(starts, ends, q_chars), config.max_tokens))
    return out


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """Digest of everything that decides token ids: vocabulary, merges, pipeline, specials.

    Padding and truncation settings are left out: trainers change them (TRL pads on the
    left) without changing a single id, and a checkpoint saved by a trainer must keep the
    shards of its base model.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        body: object = sorted(tokenizer.get_vocab().items())
    else:
        body = {k: v for k, v in json.loads(backend.to_str()).items() if k not in ("padding", "truncation")}
    return fingerprint_json({"tokenizer": body, "special": tokenizer.all_special_tokens})


def prompt_fingerprint(tokenizer: PreTrainedTokenizerBase, config: PromptConfig) -> str:
    """Key of a set of tokenized shards: tokenizer, chat template and prompt configuration."""
    return fingerprint_json({
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "chat_template": tokenizer.chat_template,
        "system_prompt": config.system_prompt,
        "few_shot": config.few_shot,
        "max_tokens": config.max_tokens,
    })
