"""Spans of the system prompt and the question, checked by decoding them back to text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    trainers,
)
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from gainrl_ops.data.arithmetic import ArithmeticConfig, generate
from gainrl_ops.data.prompts import (
    PromptConfig,
    prompt_fingerprint,
    render_prompt,
    render_prompts,
)
from gainrl_ops.scoring.models import load_tokenizer
from gainrl_ops.training.embedded import train_tokenizer

QUESTIONS = [
    "Ava has 3 apples. Ava buys 4 more apples. How many apples does Ava have now?",
    "  What is 12 * 7?  ",
    "Ünïcödé question: 5 + 6 = ?",
    "user",  # also a role name that the templates print
]
SYSTEM = "You are a careful math tutor."
LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% set sys = messages[0]['content'] + '\n\n' if messages[0]['role'] == 'system' else '' %}"
    "{% for m in messages if m['role'] != 'system' %}"
    "{% if m['role'] == 'user' %}[INST] {{ sys if loop.first else '' }}{{ m['content'] }} [/INST]"
    "{% else %}{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
)


def _metaspace_tokenizer(template: str | None) -> PreTrainedTokenizerBase:
    """A SentencePiece-style tokenizer (Metaspace, no byte level), unlike the embedded one."""
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.normalizer = normalizers.NFKC()
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    corpus = [p.problem for p in generate(ArithmeticConfig(n_problems=300, seed=3))] + QUESTIONS + [SYSTEM]
    specials = ["<unk>", "<s>", "</s>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    backend.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=specials, show_progress=False))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="</s>"
    )
    tokenizer.chat_template = template
    return tokenizer


@pytest.fixture(scope="module")
def chatml(tiny_model_path: Path) -> PreTrainedTokenizerBase:
    return load_tokenizer(str(tiny_model_path))


TOKENIZERS = {
    "chatml": None,  # the embedded Qwen2 tokenizer, filled from the fixture
    "llama3_trim": lambda: _metaspace_tokenizer(LLAMA3_TEMPLATE),
    "mistral_merged_system": lambda: _metaspace_tokenizer(MISTRAL_TEMPLATE),
    "plain_text": lambda: _metaspace_tokenizer(None),
}


@pytest.fixture(params=list(TOKENIZERS))
def tokenizer(request: pytest.FixtureRequest, chatml: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    return chatml if request.param == "chatml" else TOKENIZERS[request.param]()


def _decode(tokenizer: PreTrainedTokenizerBase, ids: list[int], span: tuple[int, int]) -> str:
    return tokenizer.decode(ids[span[0] : span[1]], skip_special_tokens=True)


@pytest.mark.parametrize("question", QUESTIONS)
def test_spans_decode_to_system_prompt_and_question(tokenizer: PreTrainedTokenizerBase, question: str) -> None:
    few_shot = (("What is 1 + 1?", "1 + 1 = 2\n#### 2"),)
    rendered = render_prompt(tokenizer, question, PromptConfig(system_prompt=SYSTEM, few_shot=few_shot))
    assert _decode(tokenizer, rendered.input_ids, rendered.system_span).strip() == SYSTEM
    assert _decode(tokenizer, rendered.input_ids, rendered.question_span).strip() == question.strip()
    assert rendered.system_span[1] <= rendered.question_span[0]
    assert not rendered.truncated


def test_question_span_is_the_last_user_turn_not_a_few_shot_copy(chatml: PreTrainedTokenizerBase) -> None:
    question = "What is 1 + 1?"
    config = PromptConfig(system_prompt=SYSTEM, few_shot=((question, "#### 2"),))
    rendered = render_prompt(chatml, question, config)
    first = render_prompt(chatml, question, PromptConfig(system_prompt=SYSTEM))
    # The question is the final user turn, so it ends as close to the end as without few-shot.
    assert len(rendered.input_ids) - rendered.question_span[1] == len(first.input_ids) - first.question_span[1]
    assert rendered.question_span[0] > first.question_span[0]


def test_no_system_prompt_gives_empty_system_span(chatml: PreTrainedTokenizerBase) -> None:
    rendered = render_prompt(chatml, QUESTIONS[0], PromptConfig(system_prompt=""))
    assert rendered.system_span[0] == rendered.system_span[1]
    assert _decode(chatml, rendered.input_ids, rendered.question_span) == QUESTIONS[0]


def test_truncation_is_explicit_and_flagged(chatml: PreTrainedTokenizerBase) -> None:
    full = render_prompt(chatml, QUESTIONS[0], PromptConfig())
    cut = render_prompt(chatml, QUESTIONS[0], PromptConfig(max_tokens=full.question_span[0] + 3))
    assert cut.truncated and len(cut.input_ids) == full.question_span[0] + 3
    assert cut.question_span == (full.question_span[0], full.question_span[0] + 3)
    assert cut.input_ids == full.input_ids[: len(cut.input_ids)]


def test_prompt_fingerprint_changes_with_what_changes_the_ids(chatml: PreTrainedTokenizerBase) -> None:
    base = prompt_fingerprint(chatml, PromptConfig())
    assert base == prompt_fingerprint(chatml, PromptConfig())
    assert base != prompt_fingerprint(chatml, PromptConfig(system_prompt="Be brief."))
    assert base != prompt_fingerprint(_metaspace_tokenizer(LLAMA3_TEMPLATE), PromptConfig())


def test_embedded_tokenizer_keeps_its_ids_after_reload(tmp_path: Path) -> None:
    corpus = [p.problem for p in generate(ArithmeticConfig(n_problems=200, seed=5))]
    trained = train_tokenizer(corpus, vocab_size=350)
    trained.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert type(reloaded).__name__ == "Qwen2Tokenizer"
    for text in corpus[:20] + ["Ünïcödé 12,345 ÷ 7 = ?", "tabs\tand\nnew lines  "]:
        assert reloaded(text)["input_ids"] == trained(text)["input_ids"]
        assert reloaded.decode(reloaded(text)["input_ids"]) == text


def test_tokenizer_fingerprint_ignores_padding_side(chatml: PreTrainedTokenizerBase, tmp_path: Path) -> None:
    """A tokenizer saved after padding a batch on the left (as a trainer or a batched
    generation leaves it) has the same ids, so it keeps the same shards."""
    chatml.backend_tokenizer.no_padding()
    before = prompt_fingerprint(chatml, PromptConfig())
    chatml.padding_side = "left"
    chatml(["a", "a longer text"], padding=True)
    chatml.save_pretrained(tmp_path)
    chatml.padding_side = "right"
    chatml.backend_tokenizer.no_padding()
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert json.loads(reloaded.backend_tokenizer.to_str())["padding"] is not None
    assert prompt_fingerprint(reloaded, PromptConfig()) == before


def test_batched_rendering_equals_one_by_one(tokenizer: PreTrainedTokenizerBase) -> None:
    """`render_prompts` (template once, one tokenizer call) gives what `render_prompt` gives,
    on every template family, with few-shot turns, odd whitespace and truncation."""
    questions = [*QUESTIONS, "  leading and trailing spaces  ", "tabs\tand\nnew lines", "x"]
    for config in (PromptConfig(system_prompt=SYSTEM), PromptConfig(system_prompt=SYSTEM, few_shot=(("What is 1 + 1?", "#### 2"),)),
                   PromptConfig(system_prompt="", max_tokens=12)):
        assert render_prompts(tokenizer, questions, config) == [render_prompt(tokenizer, q, config) for q in questions]
