"""The one answer parser, open-r1 style: literal completions, the answer the parser finds in
each, and the reward that completion earns against a reference. The reward's expectations
were checked against math-verify 0.9.0 before they were written down."""

from __future__ import annotations

import pytest

from gainrl_ops.data.answers import FinalAnswer, answers_match, extract_answer, final_answer, normalise
from gainrl_ops.training.rewards import correctness_reward

CASES = [
    # GSM8K's `####`: the rest of the line after the last one, thousands separators removed.
    pytest.param("3 + 4 = 7\n#### 7", "7", "7", 1.0, id="hashes"),
    pytest.param("3 + 4 = 7\n#### 8", "7", "8", 0.0, id="hashes-wrong"),
    pytest.param("#### 1,234", "1234", "1234", 1.0, id="hashes-thousands"),
    pytest.param("#### -1,234,567.5", "-1234567.5", "-1234567.5", 1.0, id="hashes-thousands-decimal"),
    pytest.param("#### 142", "142.0", "142", 1.0, id="hashes-vs-float-reference"),
    pytest.param("#### 3", "-3", "3", 0.0, id="hashes-sign-matters"),
    pytest.param("#### 5\nCheck: 2 + 3 = 5, 6 is wrong", "5", "5", 1.0, id="hashes-win-over-later-numbers"),
    pytest.param("\\boxed{5}, so #### 6", "6", "6", 1.0, id="hashes-win-over-boxes"),
    pytest.param("#### 12\n#### ", "12", "12", 1.0, id="trailing-empty-hashes-ignored"),
    pytest.param("#### 1,2", "12", "1,2", 0.0, id="a-list-is-not-a-thousands-number"),
    # \boxed / \fbox: braces nested to any depth.
    pytest.param("so the answer is \\boxed{42}.", "42", "42", 1.0, id="boxed"),
    pytest.param(r"\boxed{\frac{1}{\sqrt{2}}}", r"\frac{\sqrt{2}}{2}", r"\frac{1}{\sqrt{2}}", 1.0, id="boxed-fraction-of-root"),
    pytest.param(r"\boxed{\sqrt{\frac{1}{2}}}", r"\frac{\sqrt{2}}{2}", r"\sqrt{\frac{1}{2}}", 1.0, id="boxed-root-of-fraction"),
    pytest.param(r"\boxed{\frac{\frac{1}{2}}{\sqrt{\frac{1}{4}}}}", "1", r"\frac{\frac{1}{2}}{\sqrt{\frac{1}{4}}}", 1.0, id="boxed-depth-3"),
    pytest.param(r"\boxed{\frac{2}{4}}", r"\frac{1}{2}", r"\frac{2}{4}", 1.0, id="boxed-equivalent-fraction"),
    pytest.param(r"\boxed{\dfrac{1}{2}}", "0.5", r"\frac{1}{2}", 1.0, id="dfrac"),
    pytest.param(r"\boxed{\tfrac{3}{4}}", r"\frac{3}{4}", r"\frac{3}{4}", 1.0, id="tfrac"),
    pytest.param(r"\boxed{x^2+2x+1}", "(x+1)^2", "x^2+2x+1", 1.0, id="boxed-polynomial"),
    pytest.param(r"\boxed{10,000}", "10000", "10000", 1.0, id="boxed-thousands"),
    pytest.param(r"\boxed{\begin{pmatrix} 1 \\ 2 \end{pmatrix}}", r"\begin{pmatrix}1\\2\end{pmatrix}", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", 1.0, id="matrix"),
    pytest.param(r"\boxed{\begin{pmatrix} 1 \\ 3 \end{pmatrix}}", r"\begin{pmatrix}1\\2\end{pmatrix}", r"\begin{pmatrix} 1 \\ 3 \end{pmatrix}", 0.0, id="matrix-wrong"),
    pytest.param(r"\boxed{(-\infty, 3]}", r"(-\infty,3]", r"(-\infty, 3]", 1.0, id="interval"),
    pytest.param(r"\boxed{(-\infty, 3)}", r"(-\infty,3]", r"(-\infty, 3)", 0.0, id="interval-open-end-differs"),
    pytest.param(r"\boxed{(1,2)}", "(1,2)", "(1,2)", 1.0, id="tuple"),
    pytest.param(r"\boxed{(1,234)}", "1234", "(1,234)", 0.0, id="ambiguous-bracketed-comma-read-as-a-pair"),
    pytest.param(r"\boxed{\{1, 2\}}", r"\{2, 1\}", r"\{1, 2\}", 1.0, id="set-with-escaped-braces"),
    pytest.param(r"\boxed{5\text{ cm}}", "5", r"5\text{ cm}", 1.0, id="units-are-dropped"),
    pytest.param(r"\boxed{6\text{ cm}}", "5", r"6\text{ cm}", 0.0, id="units-dropped-number-still-checked"),
    pytest.param(r"\boxed{5\text{ m}}", r"5\text{ cm}", r"5\text{ m}", 1.0, id="ambiguous-units-never-compared"),
    pytest.param(r"\fbox{12}", "12", "12", 1.0, id="fbox"),
    pytest.param(r"\boxed {7}", "7", "7", 1.0, id="space-before-brace"),
    pytest.param(r"\boxed{1}, no wait: \fbox{2}", "2", "2", 1.0, id="last-box-wins"),
    pytest.param(r"\boxed{1}, no wait: \boxed{2}", "1", "2", 0.0, id="earlier-box-is-not-the-answer"),
    pytest.param(r"so \boxed{\frac{1}{2", "2", None, 0.0, id="box-left-open-is-no-answer"),
    # Completions without a marker: the last number.
    pytest.param("The total is $1,234.", "1234", "1234", 1.0, id="last-number-thousands"),
    pytest.param("First 12, then 15, finally 20", "20", "20", 1.0, id="last-number"),
    pytest.param("I am not sure.", "7", None, 0.0, id="no-answer"),
    pytest.param("", "7", None, 0.0, id="empty"),
]


@pytest.mark.parametrize(("completion", "reference", "answer", "reward"), CASES)
def test_completion_answer_and_reward(completion: str, reference: str, answer: str | None, reward: float) -> None:
    assert extract_answer(completion) == answer
    assert correctness_reward(completion, reference) == reward


@pytest.mark.parametrize(("solution", "found"), [
    ("Half of 1,000.\n#### 500", FinalAnswer("500", "####")),
    ("So 617 + 617 = 1,234\n#### 1,234", FinalAnswer("1234", "####")),
    (r"So it is $\boxed{\frac{1}{2}}$, not... wait: $\boxed{\dfrac{\sqrt{3}}{4}}$.", FinalAnswer(r"\frac{\sqrt{3}}{4}", "\\boxed")),
    (r"Hence \fbox{$x = 3$}.", FinalAnswer("$x = 3$", "\\fbox")),
    ("Blank after the marker: ####  ", FinalAnswer("", "####")),
    ("Worked out, but never stated: 3 + 4 = 7.", None),
    (r"Truncated \boxed{\frac{1}{2}", None),
])
def test_a_worked_solution_has_a_final_answer_only_with_a_marker(solution: str, found: FinalAnswer | None) -> None:
    """The loader's reference answers: no last-number fallback, since a worked solution's last
    number may be any step of the work."""
    assert final_answer(solution) == found


def test_the_same_parser_serves_completions_with_the_last_number_fallback() -> None:
    assert final_answer("3 + 4 = 7.") is None
    assert final_answer("3 + 4 = 7.", last_number=True) == FinalAnswer("7", "last number")


@pytest.mark.parametrize(("answer", "normalised"), [
    ("1,234", "1234"),
    ("-1,234,567.89", "-1234567.89"),
    ("1,234 and 5,678", "1234 and 5678"),
    ("1,2", "1,2"),
    ("12,34", "12,34"),
    ("1,2345", "1,2345"),
    ("(1,234)", "(1,234)"),
    ("[1,000, 2,000]", "[1,000, 2,000]"),
    (r"\{1,000\}", r"\{1,000\}"),
    (r"\dfrac{1}{2} + \tfrac12", r"\frac{1}{2} + \frac12"),
    (r"\dfracx", r"\dfracx"),
    ("  7 ", "7"),
])
def test_normalise(answer: str, normalised: str) -> None:
    assert normalise(answer) == normalised


@pytest.mark.parametrize(("predicted", "reference", "match"), [
    ("1,000", "1000.0", True),
    ("$1,000.", "1000", True),
    ("12", "123", False),
    ("1,2", "12", False),
    (r"\{1, 2\}", r"\{2, 1\}", True),
    (r"\dfrac{1}{2}", r"\frac{1}{2}", True),
    (None, "7", False),
])
def test_answers_match(predicted: str | None, reference: str, match: bool) -> None:
    assert answers_match(predicted, reference) is match
