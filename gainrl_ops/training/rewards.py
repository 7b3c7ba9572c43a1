"""Answer extraction and checking for math completions: pure functions of text."""

from __future__ import annotations

import logging
import re

_HASHES = re.compile(r"####\s*([^\n]+)")
_BOXED = re.compile(r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def extract_answer(completion: str) -> str | None:
    """The final answer of a completion: after the last `####`, else the last `\\boxed{}`,
    else the last number in the text; None when there is none."""
    if hashes := _HASHES.findall(completion):
        return hashes[-1].strip()
    if boxed := _BOXED.findall(completion):
        return boxed[-1].strip()
    if numbers := _NUMBER.findall(completion):
        return numbers[-1]
    return None


def _as_number(text: str) -> float | None:
    match = _NUMBER.search(text.replace("$", ""))
    if match is None or match.group(0).replace(",", "") != text.replace("$", "").replace(",", "").strip().rstrip("."):
        return None
    return float(match.group(0).replace(",", ""))


def answers_match(predicted: str | None, reference: str) -> bool:
    """Numeric equality when both sides are plain numbers (so "1,000" == "1000.0"); otherwise
    math-verify decides symbolic equivalence (fractions, LaTeX, sets, ...)."""
    if predicted is None:
        return False
    p, r = _as_number(predicted), _as_number(reference)
    if p is not None and r is not None:
        return abs(p - r) <= 1e-6 * max(1.0, abs(r))
    if predicted.strip() == reference.strip():
        return True
    from math_verify import parse, verify

    # No timeouts: math-verify implements them with SIGALRM, which fails outside the main thread.
    # It warns about that once per process and per module, which is noise for our users.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    gold = parse(f"${reference}$", parsing_timeout=None)
    guess = parse(f"${predicted}$", parsing_timeout=None)
    return bool(gold and guess and verify(gold, guess, timeout_seconds=None))


def correctness_reward(completion: str, answer: str) -> float:
    """1.0 for a correct final answer, else 0.0."""
    return float(answers_match(extract_answer(completion), answer))
