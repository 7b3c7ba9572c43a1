"""A deterministic generator of arithmetic word problems with known difficulty.

It is the embedded default dataset: it needs no download, its difficulty is known per
problem (so a curriculum can be checked against it), and its worked solutions end in
GSM8K's `#### <answer>` so the same answer checking serves it and real data.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from gainrl_ops.core.storage import atomic_path

# The name that selects the generated dataset (and, for a model, the tiny embedded one).
EMBEDDED = "embedded"
_NAMES = ("Ava", "Ben", "Cara", "Dan", "Eli", "Fay", "Gus", "Hana", "Ivan", "Jo", "Kim", "Leo", "Mia", "Noor", "Omar", "Pia")
_ITEMS = ("apple", "marble", "book", "coin", "shell", "card", "pencil", "sticker", "stamp", "cookie", "flower", "button")
_ADD = ("{who} buys {n} more {item}s.", "{who} finds {n} more {item}s.", "A friend gives {who} {n} more {item}s.")
_SUB = ("{who} gives away {n} {item}s.", "{who} loses {n} {item}s.", "{who} sells {n} {item}s.")
_MUL = ("Then {who} ends up with {n} times as many {item}s.",)


@dataclass(frozen=True)
class ArithmeticConfig:
    """What to generate. Difficulty = steps + digits - 1, from 1 to max_steps + max_digits - 1.

    n_problems: how many problems.
    seed: the only source of randomness; the same config always yields the same problems.
    max_steps: most operations chained after the starting quantity.
    max_digits: most digits of an operand (multipliers stay in 2..5 so results stay small).
    """

    n_problems: int = 2000
    seed: int = 0
    max_steps: int = 3
    max_digits: int = 1


@dataclass(frozen=True)
class WordProblem:
    problem: str
    solution: str
    answer: str
    difficulty: int
    steps: int
    digits: int

    def as_record(self) -> dict[str, object]:
        return {
            "problem": self.problem,
            "answer": self.answer,
            "solution": self.solution,
            "difficulty": self.difficulty,
            "steps": self.steps,
            "digits": self.digits,
            "source": "arithmetic",
        }


def _operand(rng: random.Random, digits: int) -> int:
    return rng.randint(1, 9) if digits == 1 else rng.randint(10 ** (digits - 1), 10**digits - 1)


def make_problem(rng: random.Random, steps: int, digits: int) -> WordProblem:
    """One problem with exactly `steps` operations on operands of up to `digits` digits."""
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    value = _operand(rng, digits)
    sentences = [f"{name} has {value} {item}s."]
    lines = []
    for _ in range(steps):
        op = rng.choice(("+", "-", "*")) if value <= 99 else rng.choice(("+", "-"))
        if op == "-" and value < 2:
            op = "+"
        if op == "+":
            n = _operand(rng, digits)
            template, result = rng.choice(_ADD), value + n
        elif op == "-":
            n = rng.randint(1, value - 1) if digits == 1 or value < 10 else rng.randint(1, min(value - 1, 10**digits - 1))
            template, result = rng.choice(_SUB), value - n
        else:
            n = rng.randint(2, 5)
            template, result = rng.choice(_MUL), value * n
        sentences.append(template.format(who=name, n=n, item=item))
        lines.append(f"{value} {op} {n} = {result}")
        value = result
    sentences.append(f"How many {item}s does {name} have now?")
    lines.append(f"#### {value}")
    return WordProblem(
        problem=" ".join(sentences),
        solution="\n".join(lines),
        answer=str(value),
        difficulty=steps + digits - 1,
        steps=steps,
        digits=digits,
    )


def generate(config: ArithmeticConfig) -> list[WordProblem]:
    """`config.n_problems` problems, difficulty drawn uniformly over (steps, digits)."""
    rng = random.Random(config.seed)
    return [
        make_problem(rng, rng.randint(1, config.max_steps), rng.randint(1, config.max_digits))
        for _ in range(config.n_problems)
    ]


def write_jsonl(problems: list[WordProblem], target: Path) -> Path:
    """Write problems as JSONL (atomically), the same format a user would bring."""
    with atomic_path(target) as tmp:
        with open(tmp, "w") as f:
            for p in problems:
                f.write(json.dumps(p.as_record()) + "\n")
    return Path(target)
