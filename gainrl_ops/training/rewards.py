"""The correctness reward of math completions, on top of the answer parser the loader uses."""

from __future__ import annotations

from gainrl_ops.data.answers import answers_match, extract_answer


def correctness_reward(completion: str, answer: str) -> float:
    """1.0 when the completion's final answer (`extract_answer`) matches the reference answer
    (`answers_match`), else 0.0; a completion with no answer gets 0.0."""
    return float(answers_match(extract_answer(completion), answer))
