"""MATH-like benchmark prompts: seeded word problems with LaTeX, sized to a token budget.

Each problem is one of several competition-style families (polynomials, linear equations,
modular arithmetic, series, geometry, probability, counting, rates) with its exact answer,
padded with context sentences (notation reminders, side remarks, earlier results) until the
rendered prompt reaches a target length drawn uniformly from [min_tokens, max_tokens] for
the tokenizer at hand. The padding never changes the answer. Prompt i depends only on the
seed and i, so the first N prompts of a longer list are the N prompts of a shorter one.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

NAMES = (
    "Ava", "Ben", "Chloe", "Diego", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonah",
    "Kavya", "Liam", "Mei", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tariq",
)


@dataclass(frozen=True)
class MathPromptConfig:
    """n_prompts problems; prompt i's target length is drawn from [min_tokens, max_tokens]."""

    n_prompts: int
    seed: int = 2024
    min_tokens: int = 150
    max_tokens: int = 600


def _signed(value: int, variable: str = "") -> str:
    """' + 3x' or ' - 3x': a term written after another one."""
    return f" {'-' if value < 0 else '+'} {abs(value)}{variable}"


def _fraction(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"\\frac{{{value.numerator}}}{{{value.denominator}}}"


# A family returns (setup sentences, question sentence, exact answer).
Family = Callable[[random.Random], tuple[list[str], str, str]]


def _polynomial(rng: random.Random) -> tuple[list[str], str, str]:
    a, b, c, k = rng.randint(2, 9), rng.choice([-1, 1]) * rng.randint(1, 20), rng.choice([-1, 1]) * rng.randint(1, 50), rng.randint(-6, 9)
    return [f"Let $f(x) = {a}x^2{_signed(b, 'x')}{_signed(c)}$ be a quadratic polynomial with integer coefficients."], \
        f"What is the value of $f({k})$?", str(a * k * k + b * k + c)


def _linear(rng: random.Random) -> tuple[list[str], str, str]:
    a, c = rng.sample(range(2, 15), 2)
    b, d = rng.randint(-40, 40), rng.randint(-40, 40)
    return [f"Consider the equation ${a}x{_signed(b)} = {c}x{_signed(d)}$, where $x$ is a real number."], \
        "Solve for $x$ and express your answer as a common fraction in lowest terms.", _fraction(Fraction(d - b, a - c))


def _modular(rng: random.Random) -> tuple[list[str], str, str]:
    base, exponent, modulus = rng.randint(2, 19), rng.randint(10, 99), rng.choice([7, 9, 11, 13, 17, 19, 23])
    return [f"The number $N = {base}^{{{exponent}}}$ is far too large to write out in full."], \
        f"What is the remainder when $N$ is divided by ${modulus}$?", str(pow(base, exponent, modulus))


def _series(rng: random.Random) -> tuple[list[str], str, str]:
    first, step, n = rng.randint(-20, 30), rng.randint(2, 12), rng.randint(10, 60)
    return [
        f"An arithmetic sequence $a_1, a_2, a_3, \\ldots$ has first term $a_1 = {first}$.",
        f"Each term after the first is obtained by adding ${step}$ to the previous term, so $a_{{n+1}} = a_n + {step}$.",
    ], f"What is $\\sum_{{k=1}}^{{{n}}} a_k$, the sum of the first ${n}$ terms?", str(n * (2 * first + (n - 1) * step) // 2)


def _path_area(rng: random.Random) -> tuple[list[str], str, str]:
    length, width, path = rng.randint(8, 60), rng.randint(5, 40), rng.randint(1, 4)
    name = rng.choice(NAMES)
    return [
        f"{name} has a rectangular garden that measures ${length}$ meters by ${width}$ meters.",
        f"A gravel path of uniform width ${path}$ meters is built around the outside of the garden.",
    ], "What is the area of the path alone, in square meters?", str((length + 2 * path) * (width + 2 * path) - length * width)


def _dice(rng: random.Random) -> tuple[list[str], str, str]:
    total = rng.randint(3, 11)
    ways = sum(1 for i in range(1, 7) for j in range(1, 7) if i + j == total)
    return ["Two fair six-sided dice, one red and one blue, are rolled at the same time."], \
        f"What is the probability that the sum of the two numbers shown is ${total}$? Express your answer as a common fraction.", \
        _fraction(Fraction(ways, 36))


def _committee(rng: random.Random) -> tuple[list[str], str, str]:
    n, k = rng.randint(8, 25), rng.randint(2, 5)
    return [f"A mathematics club has ${n}$ members, and every member is equally eligible to serve."], \
        f"In how many ways can the club choose a committee of ${k}$ members, if the order of selection does not matter?", str(math.comb(n, k))


def _gcd_lcm(rng: random.Random) -> tuple[list[str], str, str]:
    g = rng.randint(2, 15)
    a, b = g * rng.randint(2, 30), g * rng.randint(2, 30)
    return [f"{rng.choice(NAMES)} writes the integers ${a}$ and ${b}$ on the board."], \
        f"What is $\\gcd({a}, {b}) + \\operatorname{{lcm}}({a}, {b})$?", str(math.gcd(a, b) + math.lcm(a, b))


def _average_speed(rng: random.Random) -> tuple[list[str], str, str]:
    d1, d2, v1, v2 = rng.randint(20, 200), rng.randint(20, 200), rng.randint(20, 70), rng.randint(20, 70)
    name = rng.choice(NAMES)
    return [
        f"{name} drives ${d1}$ miles at a constant speed of ${v1}$ miles per hour.",
        f"Then {name} drives another ${d2}$ miles at a constant speed of ${v2}$ miles per hour without stopping.",
    ], "What is the average speed for the whole trip, in miles per hour? Express your answer as a common fraction.", \
        _fraction(Fraction(d1 + d2) / (Fraction(d1, v1) + Fraction(d2, v2)))


def _hypotenuse(rng: random.Random) -> tuple[list[str], str, str]:
    a, b, c = rng.choice([(3, 4, 5), (5, 12, 13), (8, 15, 17), (7, 24, 25), (20, 21, 29)])
    k = rng.randint(1, 9)
    return [f"A right triangle $ABC$ has legs $AB = {k * a}$ and $BC = {k * b}$, with the right angle at $B$."], \
        "What is the length of the hypotenuse $AC$?", str(k * c)


FAMILIES: tuple[Family, ...] = (
    _polynomial, _linear, _modular, _series, _path_area, _dice, _committee, _gcd_lcm, _average_speed, _hypotenuse,
)


def _context_sentence(rng: random.Random) -> str:
    """A sentence that sits in a problem statement without changing its answer."""
    a, b, c, n = rng.randint(2, 19), rng.randint(2, 19), rng.randint(2, 30), rng.randint(3, 9)
    name, other = rng.sample(NAMES, 2)
    templates = (
        f"{name} copies the problem from the board, where the teacher has also written $\\frac{{{a}}}{{{b}}} + \\frac{{{c}}}{{{n}}}$ as a warm-up.",
        "Recall that $\\binom{n}{k} = \\frac{n!}{k!\\,(n-k)!}$ for integers $0 \\le k \\le n$.",
        f"Earlier in the week the class found that ${a}^2 + {b}^2 = {a * a + b * b}$, which is not needed here.",
        "The answer should be given in simplest form, without units unless the question asks for them.",
        f"{name} spends {c} minutes on the problem before checking the work with {other}.",
        f"A hint on the worksheet says to expand $({a}x + {b})({c}x - {n})$ carefully, although it belongs to a different exercise.",
        f"Note that $\\sqrt{{{a * a}}} = {a}$ and that $\\lvert -{b} \\rvert = {b}$.",
        f"The worksheet numbers its problems from ${n}$ to ${n + c}$, and this one is printed in a box.",
        f"In a previous exercise the inequality ${a}x - {b} < {c}$ was solved over the positive integers.",
        f"The geometric series $\\sum_{{k=0}}^{{{n}}} {a}^k$ appears on the same page, but it is part of another problem.",
        f"{name} notes that ${n}! = {math.factorial(n)}$ and writes it in the margin.",
        f"The class has ${c + n}$ students, and ${n}$ of them have already handed in their answers.",
        f"The function $g(x) = \\frac{{{a}x + {b}}}{{x - {c}}}$ from the previous page is undefined at $x = {c}$.",
        f"A table on the same page lists $\\log_2 {2 ** n} = {n}$ and $\\log_{{10}} 1000 = 3$.",
        "The angles of a triangle sum to $180^\\circ$, and a full turn is $360^\\circ$.",
        f"{other} suggests drawing a diagram first, since the numbers ${a}$, ${b}$ and ${c}$ are easy to misread.",
    )
    return rng.choice(templates)


def generate(config: MathPromptConfig, count_tokens: Callable[[str], int], overhead_tokens: int) -> list[dict[str, str]]:
    """`n_prompts` distinct {"problem", "answer"} records.

    count_tokens: tokens of a piece of text under the model's tokenizer.
    overhead_tokens: tokens of the rendered prompt outside the question (chat markup,
        system prompt, few-shot turns); the question fills the rest of the target length.
    Sentences are counted one at a time (with their leading space), which matches the count
    of the joined text for byte-level BPE tokenizers that split on spaces.
    """
    records: list[dict[str, str]] = []
    seen: set[str] = set()
    for i in range(config.n_prompts):
        rng = random.Random(f"{config.seed}:{i}")
        target = rng.randint(config.min_tokens, config.max_tokens) - overhead_tokens
        while True:
            setup, question, answer = rng.choice(FAMILIES)(rng)
            used = sum(count_tokens(" " + s) for s in (*setup, question))
            context: list[str] = []
            while True:  # stop before the sentence that would pass the target
                sentence = _context_sentence(rng)
                tokens = count_tokens(" " + sentence)
                if used + tokens > target:
                    break
                context.append(sentence)
                used += tokens
            # The facts first, then the remarks, then the question: how MATH problems read.
            problem = " ".join((*setup, *context, question))
            if problem not in seen:
                break
        seen.add(problem)
        records.append({"problem": problem, "answer": answer})
    return records
