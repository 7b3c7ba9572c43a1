"""Final answers of math text, and whether two answers agree: the one parser that the dataset
loader (reference answers from worked solutions) and the reward (answers of completions) share.

Accepted forms, in order:
- the last `####` (GSM8K) followed by text: the rest of that line (or the next non-blank one);
- else the last `\\boxed{...}` or `\\fbox{...}` (MATH), braces nested to any depth, a space
  before the brace allowed; a box left open (a truncated completion) is no answer;
- else, for completions only, the last number in the text. A worked solution with neither
  marker has no final answer: its last number may be any intermediate step.

An extracted answer is normalised: `\\dfrac`/`\\tfrac` become `\\frac`, and thousands
separators are removed (`1,234` -> `1234`) unless the answer is bracketed, where a comma
separates elements (`(1,234)` is a pair).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

# Every text with a marked final answer (`####` or a box) contains one of these: a vectorised pre-filter.
MARKERS = ("####", "\\boxed", "\\fbox")

# The text after a `####` (blank lines skipped): the rest of its line.
_HASHES = re.compile(r"(?:####\s*)+([^\n]*\S)")
_BOX = re.compile(r"(\\boxed|\\fbox)\s*\{")
# A brace that groups, or a token to skip: an escaped brace is a literal one, `\\` a line break.
_BRACE = re.compile(r"\\\\|\\[{}]|[{}]")
_FRAC = re.compile(r"\\[dt]frac(?![a-zA-Z])")
# 1,234 or -1,234,567.5; not the 1,2 of a list nor the 12,345,67 of a typo.
_GROUPED = re.compile(r"(?<![\d.,])-?\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d]|,\d)")
_BRACKETS = ("(", "[", "\\{", "\\langle")
_NUMBER = re.compile(r"(?<![\d.])-?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?")
_PLAIN_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


@dataclass(frozen=True)
class FinalAnswer:
    """A final answer, normalised, and the form it was found in (`####`, `\\boxed`, `\\fbox` or
    `last number`; the loader records it)."""

    text: str
    form: str


def final_answer(text: str, *, last_number: bool = False) -> FinalAnswer | None:
    """The final answer of `text`: after the last `####`, else in the last `\\boxed{}`/`\\fbox{}`,
    else (only with `last_number`, for completions) the last number; None when there is none.
    A text whose every `####` is followed by nothing has an empty answer (the loader reports it
    as such, a completion has none)."""
    if "####" in text:
        hashes = _HASHES.findall(text)
        return FinalAnswer(normalise(hashes[-1]) if hashes else "", "####")
    boxes = list(_BOX.finditer(text))
    if boxes:
        inside = _braced(text, boxes[-1].end())
        return None if inside is None else FinalAnswer(normalise(inside), boxes[-1].group(1))
    if last_number and (numbers := _NUMBER.findall(text)):
        return FinalAnswer(normalise(numbers[-1]), "last number")
    return None


def extract_answer(completion: str) -> str | None:
    """The final answer of a model's completion (`final_answer` with the last-number fallback)."""
    found = final_answer(completion, last_number=True)
    return found.text if found is not None and found.text else None


def normalise(answer: str) -> str:
    """`answer` stripped, with `\\dfrac`/`\\tfrac` as `\\frac` and thousands separators removed
    outside brackets (models rarely reproduce separators; in `(1,234)` the comma is a separator
    of elements)."""
    answer = _FRAC.sub(r"\\frac", answer.strip())
    if any(bracket in answer for bracket in _BRACKETS):
        return answer
    return _GROUPED.sub(lambda number: number.group(0).replace(",", ""), answer)


def answers_match(predicted: str | None, reference: str) -> bool:
    """Numeric equality when both sides are plain numbers (so "1,000" == "1000.0"); otherwise
    math-verify decides symbolic equivalence (fractions, roots, LaTeX, sets, intervals,
    matrices). math-verify drops units, so `5\\text{ cm}` matches `5`."""
    if predicted is None:
        return False
    predicted, reference = normalise(predicted), normalise(reference)
    p, r = _as_number(predicted), _as_number(reference)
    if p is not None and r is not None:
        return abs(p - r) <= 1e-6 * max(1.0, abs(r))
    if predicted == reference:
        return True
    from math_verify import parse, verify

    # No timeouts: math-verify implements them with SIGALRM, which fails outside the main thread.
    # It warns about that once per process and per module, which is noise for our users.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    gold = parse(f"${reference}$", parsing_timeout=None)
    guess = parse(f"${predicted}$", parsing_timeout=None)
    return bool(gold and guess and verify(gold, guess, timeout_seconds=None))


def _as_number(text: str) -> float | None:
    plain = text.replace("\\$", "").replace("$", "").strip().rstrip(".")
    return float(plain) if _PLAIN_NUMBER.fullmatch(plain) else None


def _braced(text: str, begin: int) -> str | None:
    """The text from `begin` (just after an opening brace) to its matching closing brace, or
    None when the brace is never closed."""
    depth = 1
    for brace in _BRACE.finditer(text, begin):
        depth += {"{": 1, "}": -1}.get(brace.group(0), 0)
        if depth == 0:
            return text[begin:brace.start()]
    return None
