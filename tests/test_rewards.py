"""The training reward on literal completions (the answer forms themselves are tabled in
tests/test_answers.py): what TRL's reward function receives and returns."""

import pytest

from gainrl_ops.training.rewards import correctness_reward


@pytest.mark.parametrize(("completion", "answer", "reward"), [
    ("3 + 4 = 7\n#### 7", "7", 1.0),
    ("#### 1,234", "1234", 1.0),
    ("so the answer is \\boxed{42}.", "42", 1.0),
    # The old one-level regex extracted "2" here, so this correct completion earned 0.
    ("\\boxed{\\frac{1}{\\sqrt{2}}}", "\\frac{\\sqrt{2}}{2}", 1.0),
    ("\\boxed{x^2+2x+1}", "(x+1)^2", 1.0),
    ("First 12, then 15, finally 20", "20", 1.0),
    ("I am not sure.", "7", 0.0),
    ("", "7", 0.0),
])
def test_correctness_reward(completion: str, answer: str, reward: float) -> None:
    assert correctness_reward(completion, answer) == reward
