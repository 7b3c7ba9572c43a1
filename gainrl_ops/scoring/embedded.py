"""The embedded default model: a tiny Qwen2 with a locally trained tokenizer, warmed up by
a short supervised run on generated arithmetic so that GRPO sees both right and wrong
rollouts. Nothing is downloaded; the result is a normal `save_pretrained` folder that
`models.load_model` opens like any hub checkpoint. Builds are cached by configuration.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tokenizers import (
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    trainers,
)
from tqdm.auto import tqdm
from transformers import (
    GenerationConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Qwen2Config,
    Qwen2ForCausalLM,
)
from transformers.models.qwen2.tokenization_qwen2 import (
    PRETOKENIZE_REGEX,
    Qwen2Tokenizer,
)

from gainrl_ops.core.fingerprint import fingerprint_json
from gainrl_ops.core.layout import Layout
from gainrl_ops.core.storage import atomic_directory
from gainrl_ops.data.arithmetic import ArithmeticConfig, WordProblem, generate
from gainrl_ops.data.prompts import PromptConfig, render_text
from gainrl_ops.data.sources import EMBEDDED
from gainrl_ops.training.evaluation import greedy_accuracy

log = logging.getLogger(__name__)

ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Bumped when the build recipe changes in a way the config does not capture.
_RECIPE_VERSION = 1


@dataclass(frozen=True)
class EmbeddedModelConfig:
    """Everything that decides the embedded model; its digest names the cached build.

    data: the generated training problems (the eval problems use seed + 1).
    vocab_size: BPE vocabulary including the 256 byte symbols and 3 special tokens.
    hidden_size, intermediate_size, num_layers, num_heads, num_kv_heads: Qwen2 shape.
    sft_steps, batch_size, learning_rate: the supervised warm-up.
    eval_problems: held-out problems for the greedy accuracy recorded with the build.
    """

    data: ArithmeticConfig = field(default_factory=lambda: ArithmeticConfig(n_problems=20000, seed=1234))
    prompt: PromptConfig = field(default_factory=PromptConfig)
    vocab_size: int = 512
    hidden_size: int = 128
    intermediate_size: int = 384
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    sft_steps: int = 800
    batch_size: int = 32
    learning_rate: float = 3e-3
    eval_problems: int = 256
    seed: int = 0

    def digest(self) -> str:
        return fingerprint_json({"config": asdict(self), "recipe": _RECIPE_VERSION})


def train_tokenizer(corpus: list[str], vocab_size: int) -> Qwen2Tokenizer:
    """A byte-level BPE with Qwen2's own normaliser and pre-tokeniser.

    `AutoTokenizer` rebuilds exactly this pipeline for model_type qwen2 whatever
    tokenizer.json says, so training with anything else would change ids after reload.
    """
    backend = Tokenizer(models.BPE())
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[ENDOFTEXT, IM_START, IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(corpus, trainer)
    state = json.loads(backend.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    tokenizer = Qwen2Tokenizer(vocab=state["vocab"], merges=merges, additional_special_tokens=[IM_START, IM_END])
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.eos_token = IM_END
    return tokenizer


def _sft_example(tokenizer: PreTrainedTokenizerBase, problem: WordProblem, prompt: PromptConfig) -> tuple[list[int], int]:
    """Token ids of prompt + solution + end of turn, and where the solution starts."""
    prompt_ids = tokenizer(render_text(tokenizer, problem.problem, prompt), add_special_tokens=False)["input_ids"]
    target_ids = tokenizer(problem.solution + IM_END, add_special_tokens=False)["input_ids"]
    return prompt_ids + target_ids, len(prompt_ids)


def _batch(examples: list[tuple[list[int], int]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad_id)
    labels = torch.full((len(examples), width), -100)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, (ids, start) in enumerate(examples):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, start : len(ids)] = torch.tensor(ids[start:])
        mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def supervised_warmup(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, problems: list[WordProblem], config: EmbeddedModelConfig
) -> list[float]:
    """Train on the worked solutions (loss on the answer tokens only); returns the losses."""
    rng = random.Random(config.seed)
    examples = [_sft_example(tokenizer, p, config.prompt) for p in problems]
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.01)
    warmup = max(1, config.sft_steps // 20)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, config.sft_steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model.train()
    losses = []
    for _ in (bar := tqdm(range(config.sft_steps), desc="warm-up (SFT)", unit="step")):
        loss = model(**_batch(rng.sample(examples, config.batch_size), tokenizer.pad_token_id)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    return losses


def build_embedded_model(config: EmbeddedModelConfig, target: Path) -> dict[str, object]:
    """Build tokenizer and model from scratch into `target`; returns the build report."""
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    problems = generate(config.data)
    # The chat markup is in the corpus so that role names and separators get tokens of their own.
    corpus = [
        f"{IM_START}system\n{config.prompt.system_prompt}{IM_END}\n{IM_START}user\n{p.problem}{IM_END}\n"
        f"{IM_START}assistant\n{p.solution}{IM_END}\n"
        for p in problems
    ]
    tokenizer = train_tokenizer(corpus, config.vocab_size)
    model_config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids(IM_END),
        pad_token_id=tokenizer.pad_token_id,
    )
    model = Qwen2ForCausalLM(model_config)
    losses = supervised_warmup(model, tokenizer, problems, config)
    model.eval()
    model.generation_config = GenerationConfig(
        eos_token_id=[model_config.eos_token_id, tokenizer.convert_tokens_to_ids(ENDOFTEXT)],
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
        max_new_tokens=64,
    )
    held_out = generate(ArithmeticConfig(
        n_problems=config.eval_problems,
        seed=config.data.seed + 1,
        max_steps=config.data.max_steps,
        max_digits=config.data.max_digits,
    ))
    accuracy = greedy_accuracy(model, tokenizer, [(p.problem, p.answer) for p in held_out], config.prompt)
    report = {
        "digest": config.digest(),
        "config": asdict(config),
        "parameters": sum(p.numel() for p in model.parameters()),
        "final_loss": sum(losses[-50:]) / len(losses[-50:]),
        "held_out_accuracy": accuracy,
        "build_seconds": round(time.perf_counter() - started, 1),
    }
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    (target / "gainrl_build.json").write_text(json.dumps(report, indent=2, default=str))
    return report


def embedded_model_path(config: EmbeddedModelConfig | None = None, root: Path | None = None) -> Path:
    """The folder of the embedded model for `config`, building it on first use.

    The build goes to a temporary folder that is renamed into place when complete, so an
    interrupted build is never mistaken for a finished one.
    """
    config = config or EmbeddedModelConfig()
    target = (root or Layout.default().models_dir) / f"embedded-{config.digest()}"
    if (target / "gainrl_build.json").exists():
        return target
    with atomic_directory(target) as tmp:
        report = build_embedded_model(config, tmp)
    log.info("built embedded model %s: held-out accuracy %.3f", target, report["held_out_accuracy"])
    return target


def resolve_model(name_or_path: str, layout: Layout, embedded: EmbeddedModelConfig | None = None) -> str:
    """A loadable model id or path; "embedded" builds (once, cached) the tiny default model."""
    if name_or_path == EMBEDDED:
        return str(embedded_model_path(embedded, root=layout.models_dir))
    return name_or_path
