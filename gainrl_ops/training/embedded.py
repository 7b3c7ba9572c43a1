"""The embedded default model: a tiny Qwen2 with a locally trained tokenizer, warmed up by
a short supervised run on generated arithmetic so that GRPO sees both right and wrong
rollouts. Nothing is downloaded; the result is a normal `save_pretrained` folder that
`models.load_model` opens like any hub checkpoint. Builds are cached by configuration.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
from gainrl_ops.core.progress import bar as progress_bar
from gainrl_ops.core.storage import atomic_directory
from gainrl_ops.data.arithmetic import ArithmeticConfig, WordProblem, generate
from gainrl_ops.data.prompts import PromptConfig, render_prompts
from gainrl_ops.scoring.capture import broadcast_cache
from gainrl_ops.scoring.checkpoints import checkpoint_fingerprint
from gainrl_ops.scoring.scorer import shared_prefix_length
from gainrl_ops.training.evaluation import greedy_accuracy
from gainrl_ops.training.float64 import causal_lm_loss_in_model_dtype, float64_model

log = logging.getLogger(__name__)

ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Bumped when the build recipe changes in a way the config does not capture.
_RECIPE_VERSION = 4
# Significant bits kept of each weight, after every warm-up step and in the stored float32
# (which holds 24). Two CPUs' float64 updates differ at float64 rounding, and training grows
# such differences: without the grid, a 450-step build under ATen's AVX-512 and portable
# kernels ended at different models (final loss 0.228 and 0.201). On the grid the copies stay
# equal unless an update lands within float64 rounding of a grid boundary.
STORED_BITS = 16


@dataclass(frozen=True)
class EmbeddedModelConfig:
    """Everything that decides the embedded model; its digest names the cached build.

    data: the generated training problems (the eval problems use seed + 1).
    vocab_size: BPE vocabulary including the 256 byte symbols and 3 special tokens.
    hidden_size, intermediate_size, num_layers, num_heads, num_kv_heads: Qwen2 shape. Two
        layers learn this task in fewer steps than four of the same width, at half the cost.
    sft_steps, batch_size, learning_rate: the supervised warm-up (examples per step; the peak
        rate of the schedule in `lr_factor`).
    micro_batch: examples per forward pass inside a step; the step's examples are sorted by
        length first, so smaller micro-batches waste less compute on padding.
    eval_problems: held-out problems for the greedy accuracy recorded with the build.
    """

    data: ArithmeticConfig = field(default_factory=lambda: ArithmeticConfig(n_problems=20000, seed=1234))
    prompt: PromptConfig = field(default_factory=PromptConfig)
    vocab_size: int = 512
    hidden_size: int = 128
    intermediate_size: int = 384
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    sft_steps: int = 450
    batch_size: int = 32
    micro_batch: int = 8
    learning_rate: float = 1.5e-3
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


def sft_examples(
    tokenizer: PreTrainedTokenizerBase, problems: list[WordProblem], prompt: PromptConfig
) -> list[tuple[list[int], int]]:
    """Token ids of prompt + solution + end of turn for each problem, and where the solution
    starts; prompts and solutions are each tokenized in one batched call."""
    prompts = render_prompts(tokenizer, [p.problem for p in problems], prompt)
    solutions = tokenizer([p.solution + IM_END for p in problems], add_special_tokens=False)["input_ids"]
    return [(rendered.input_ids + ids, len(rendered.input_ids)) for rendered, ids in zip(prompts, solutions, strict=True)]


def shared_prefix(examples: list[tuple[list[int], int]]) -> list[int]:
    """The longest token prefix that every example starts with and that ends at or before
    every solution: the template head and system prompt, identical in every example. The
    scorer's rule, with the solution in place of the question."""
    ids = [ids for ids, _ in examples]
    return ids[0][: shared_prefix_length(ids, [start for _, start in examples])]


def _suffix_batch(examples: list[tuple[list[int], int]], skip: int, pad_id: int) -> dict[str, torch.Tensor]:
    """The examples without their first `skip` tokens, right-padded, with an attention mask
    that also covers the `skip` cached prefix tokens before them."""
    width = max(len(ids) for ids, _ in examples) - skip
    input_ids = torch.full((len(examples), width), pad_id)
    labels = torch.full((len(examples), width), -100)
    mask = torch.zeros((len(examples), skip + width), dtype=torch.long)
    mask[:, :skip] = 1
    for row, (ids, start) in enumerate(examples):
        input_ids[row, : len(ids) - skip] = torch.tensor(ids[skip:])
        labels[row, start - skip : len(ids) - skip] = torch.tensor(ids[start:])
        mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels,
            "position_ids": torch.arange(skip, skip + width).unsqueeze(0)}


def sft_loss(
    model: PreTrainedModel, prefix: list[int], examples: list[tuple[list[int], int]], micro_batch: int, pad_id: int
) -> torch.Tensor:
    """Mean next-token loss over the solution tokens of `examples`, equal to one padded forward
    of the whole batch but cheaper: the shared prefix runs once (its keys and values are
    broadcast over the batch; gradients flow back through them), and the rest runs in
    micro-batches of similar length, so little compute goes to padding."""
    kv: list[tuple[torch.Tensor, torch.Tensor]] = []
    if prefix:
        cache = model.model(input_ids=torch.tensor([prefix]), use_cache=True).past_key_values
        kv = [(layer.keys, layer.values) for layer in cache.layers]
    targets = sum(len(ids) - start for ids, start in examples)
    ordered = sorted(examples, key=lambda e: len(e[0]))
    total = torch.zeros(())
    for first in range(0, len(ordered), micro_batch):
        chunk = ordered[first : first + micro_batch]
        cache = broadcast_cache(kv, len(chunk), model.config) if kv else None
        batch = _suffix_batch(chunk, len(prefix), pad_id)
        total = total + model(**batch, past_key_values=cache, use_cache=cache is not None, num_items_in_batch=targets).loss
    return total


def lr_factor(step: int, total: int) -> float:
    """Warm-up over the first 5% of the steps, then the full rate, then a linear decay to 0
    over the last 30% of the rest. A short run learns more this way than under a cosine,
    which lowers the rate from the start: on the default model, 350 steps of this schedule
    reached 0.26 held-out accuracy, 400 steps of a cosine 0.21 (both at a peak of 3e-3)."""
    warmup = max(1, total // 20)
    if step < warmup:
        return (step + 1) / warmup
    done = (step - warmup) / max(1, total - warmup)
    return 1.0 if done < 0.7 else (1 - done) / 0.3


def supervised_warmup(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, problems: list[WordProblem], config: EmbeddedModelConfig
) -> list[float]:
    """Train on the worked solutions (loss on the answer tokens only); returns the losses."""
    rng = random.Random(config.seed)
    examples = sft_examples(tokenizer, problems, config.prompt)
    prefix = shared_prefix(examples)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config.sft_steps))
    model.train()
    losses = []
    for _ in (bar := progress_bar(None, "warm-up (SFT)", unit="step", iterable=range(config.sft_steps))):
        loss = sft_loss(model, prefix, rng.sample(examples, config.batch_size), config.micro_batch, tokenizer.pad_token_id)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        # Back on the stored grid after every step: two CPUs' updates differ at float64
        # rounding, and training amplifies such differences to different models within a few
        # hundred steps unless they are rounded away before the next step.
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.copy_(round_significand(parameter, STORED_BITS))
        losses.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    return losses


def qwen2_config(
    tokenizer: PreTrainedTokenizerBase,
    hidden_size: int,
    intermediate_size: int,
    num_layers: int,
    num_heads: int,
    num_kv_heads: int,
    max_positions: int,
    vocab_size: int | None = None,
) -> Qwen2Config:
    """A Qwen2 shape for a tokenizer from `train_tokenizer`: tied embeddings, no BOS token,
    and end of turn as EOS, as in Qwen's chat models. `vocab_size` may exceed the tokenizer's
    (rows no token uses), to give a model the embedding size of a larger one."""
    return Qwen2Config(
        vocab_size=max(vocab_size or 0, len(tokenizer)),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids(IM_END),
        pad_token_id=tokenizer.pad_token_id,
    )


@contextmanager
def reproducible_numerics() -> Iterator[None]:
    """One thread, deterministic algorithms and float64 as the default dtype, restored after.

    With one thread a sum's order depends only on the kernel, not on how many cores split it;
    in float64 the kernels of different CPUs (ATen's AVX-512, AVX2 and portable code, MKL's
    paths) still sum in different orders, but the results differ only at float64 rounding.
    """
    threads, dtype = torch.get_num_threads(), torch.get_default_dtype()
    deterministic, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.set_default_dtype(dtype)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def round_significand(values: torch.Tensor, bits: int) -> torch.Tensor:
    """float64 `values` rounded to `bits` significant bits (half away from zero), in float32.

    Integer arithmetic on the bit patterns, so the rounding is exact and the same on every CPU;
    with at most 24 bits the cast to float32 is exact too.
    """
    if not 1 <= bits <= 24:
        raise ValueError(f"bits must be 1..24 to fit float32, got {bits}")
    drop = 53 - bits
    raw = values.detach().to(torch.float64).contiguous().view(torch.int64)
    rounded = (raw + (1 << (drop - 1))) & ~((1 << drop) - 1)
    return rounded.view(torch.float64).to(torch.float32)


def build_embedded_model(config: EmbeddedModelConfig, target: Path) -> dict[str, object]:
    """Build tokenizer and model from scratch into `target`; returns the build report.

    The same weights on every x86 CPU: the warm-up runs in float64 on one thread
    (`reproducible_numerics`, `float64_model`), with the weights rounded to `STORED_BITS`
    significant bits after every step, a grid far coarser than the float64 differences between
    CPUs, and stored in float32 on that grid. The held-out accuracy of the report is the stored weights' in float64, so it is
    the same everywhere too.
    """
    started = time.perf_counter()
    with reproducible_numerics():
        torch.manual_seed(config.seed)
        problems = generate(config.data)
        # The chat markup is in the corpus so that role names and separators get tokens of their own.
        corpus = [
            f"{IM_START}system\n{config.prompt.system_prompt}{IM_END}\n{IM_START}user\n{p.problem}{IM_END}\n"
            f"{IM_START}assistant\n{p.solution}{IM_END}\n"
            for p in problems
        ]
        tokenizer = train_tokenizer(corpus, config.vocab_size)
        model_config = qwen2_config(
            tokenizer, config.hidden_size, config.intermediate_size, config.num_layers, config.num_heads, config.num_kv_heads,
            max_positions=1024,
        )
        model = float64_model(Qwen2ForCausalLM(model_config))
        model.loss_function = causal_lm_loss_in_model_dtype
        warmup_started = time.perf_counter()
        losses = supervised_warmup(model, tokenizer, problems, config)
        warmup_seconds = time.perf_counter() - warmup_started
        stored = {name: round_significand(value, STORED_BITS) for name, value in model.state_dict().items()}
    model_config.dtype = torch.float32
    model = Qwen2ForCausalLM(model_config).to(torch.float32)
    model.load_state_dict(stored)
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
    with reproducible_numerics():
        checked = float64_model(Qwen2ForCausalLM(model_config)).eval()
        checked.load_state_dict(stored)
        checked.generation_config = model.generation_config
        accuracy = greedy_accuracy(checked, tokenizer, [(p.problem, p.answer) for p in held_out], config.prompt)
    report = {
        "digest": config.digest(),
        "config": asdict(config),
        "parameters": sum(p.numel() for p in model.parameters()),
        "final_loss": sum(losses[-50:]) / len(losses[-50:]),
        "held_out_accuracy": accuracy,
        "stored_bits": STORED_BITS,
        "warmup_seconds": round(warmup_seconds, 1),
        "warmup_steps_per_second": round(config.sft_steps / warmup_seconds, 2),
        "build_seconds": round(time.perf_counter() - started, 1),
    }
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    report["fingerprint"] = checkpoint_fingerprint(str(target))
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
    log.info(
        "built embedded model %s in %.0f s (warm-up: %d steps at %.1f steps/s), held-out accuracy %.3f",
        target, report["build_seconds"], config.sft_steps, report["warmup_steps_per_second"], report["held_out_accuracy"],
    )
    return target
