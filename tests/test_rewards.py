"""Answer checking on literal completions."""

import pytest

from gainrl_ops.training.rewards import (
    answers_match,
    correctness_reward,
    extract_answer,
)


@pytest.mark.parametrize(("completion", "answer", "reward"), [
    ("3 + 4 = 7\n#### 7", "7", 1.0),
    ("3 + 4 = 7\n#### 8", "7", 0.0),
    ("#### 1,234", "1234", 1.0),
    ("The total is $1,234.", "1234", 1.0),
    ("so the answer is \\boxed{42}.", "42", 1.0),
    ("\\boxed{\\frac{1}{2}}", "0.5", 1.0),
    ("\\boxed{\\frac{2}{4}}", "\\frac{1}{2}", 1.0),
    ("\\boxed{x^2+2x+1}", "(x+1)^2", 1.0),
    ("I am not sure.", "7", 0.0),
    ("First 12, then 15, finally 20", "20", 1.0),
    ("#### 142", "142.0", 1.0),
    ("#### -3", "-3", 1.0),
    ("#### 3", "-3", 0.0),
    ("", "7", 0.0),
])
def test_correctness_reward(completion: str, answer: str, reward: float) -> None:
    assert correctness_reward(completion, answer) == reward


def test_hashes_win_over_later_numbers_and_boxed_over_plain_numbers() -> None:
    assert extract_answer("#### 5\nCheck: 2 + 3 = 5, 6 is wrong") == "5"
    assert extract_answer("We get \\boxed{12} after 3 steps") == "12"
    assert extract_answer("no digits") is None


def test_text_answers_need_equivalence_not_just_a_substring() -> None:
    assert not answers_match("12", "123")
    assert answers_match("\\{1, 2\\}", "\\{2, 1\\}")
