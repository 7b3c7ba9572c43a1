"""Pass rates of a checkpoint: k sampled completions per prompt, scored by the training reward.

The reward-based difficulty signal that other RL frameworks curriculum on (prime-rl's pools,
LILO's learnability p(1 - p)), measured the way training would see it: plain sampling at the
training temperature, the prompt tokens the angle was scored on, `correctness_reward`.

Determinism: the prompts drawn depend on the seed and the set of prompt ids; completion j of
prompt `id` draws its tokens from its own generator, seeded by (seed, id, j), through the
Gumbel-max trick inside the greedy decoding loop that evaluation uses. So a prompt's draws do
not depend on which prompts share its batch or in what order they run. Its logits do, in the
last bits (a batch's padding changes the kernels' summation order), which can flip a
near-tie: on one machine and one batch size the table is exactly reproducible. The generators
live on the model's device, and CUDA's streams are not CPU's: the same seed draws other tokens
on a GPU than on a CPU.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Sequence

import numpy as np
import polars as pl
import torch
from transformers import LogitsProcessor, LogitsProcessorList, PreTrainedModel, PreTrainedTokenizerBase

from gainrl_ops.data import answers as answer_parser
from gainrl_ops.difficulty.config import PassRateConfig
from gainrl_ops.difficulty.store import PassRateSummary, publish_pass_rates
from gainrl_ops.scoring.models import eval_mode
from gainrl_ops.scoring.target import CheckpointTarget
from gainrl_ops.training import rewards
from gainrl_ops.training.evaluation import Decoded, decode
from gainrl_ops.training.rewards import correctness_reward

Reward = Callable[[str, str], float]
# What `estimate_pass_rates` needs of each prompt.
REQUIRED_COLUMNS: tuple[str, ...] = ("id", "answer", "input_ids")


class GumbelSampling(LogitsProcessor):
    """Turns greedy decoding into sampling at `temperature`, each row from its own generator.

    argmax_v (logit_v / T + G_v), with G_v i.i.d. Gumbel(0, 1) = -log(-log U_v), is a draw from
    softmax(logit / T) (the Gumbel-max trick). Row r's uniforms come from a generator seeded
    with `seeds[r]` alone, so its tokens do not depend on the rows batched with it.
    """

    def __init__(self, seeds: Sequence[int], temperature: float, device: torch.device) -> None:
        self.generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]
        self.temperature = temperature

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        vocab, device = scores.shape[-1], scores.device
        uniform = torch.stack([torch.rand(vocab, generator=g, device=device) for g in self.generators])
        # U = 0 would make G = -inf: that token is simply never drawn, as its probability 2^-24 says.
        gumbel = -torch.log(-torch.log(uniform.clamp_min(torch.finfo(uniform.dtype).tiny)))
        return scores.to(gumbel.dtype) / self.temperature + gumbel


def draw_seed(seed: int, prompt_id: str, draw: int) -> int:
    """The generator seed of completion `draw` of `prompt_id`: a digest, so nearby seeds and ids
    give unrelated streams."""
    digest = hashlib.blake2b(f"{seed}\0{prompt_id}\0{draw}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def sample_prompts(prompts: pl.DataFrame, sample: int | None, seed: int) -> pl.DataFrame:
    """All prompts sorted by id, or `sample` of them drawn without replacement with `seed`;
    sorting first makes the draw depend on the seed and the set of ids, not the stored order."""
    ordered = prompts.sort("id")
    if sample is None or sample >= ordered.height:
        return ordered
    rows = np.sort(np.random.default_rng(seed).choice(ordered.height, size=sample, replace=False))
    return ordered[rows]


def sample_completions(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    ids: Sequence[str],
    input_ids: Sequence[Sequence[int]],
    config: PassRateConfig,
) -> Decoded:
    """`config.k` sampled completions of each prompt, prompt-major: row i * k + j is completion
    j of prompt i. Plain sampling at `config.temperature` (no top-k, top-p or repetition
    penalty, whatever the model's generation config says)."""
    k = config.k
    rows = [list(prompt) for prompt in input_ids for _ in range(k)]
    seeds = [draw_seed(config.seed, prompt_id, j) for prompt_id in ids for j in range(k)]

    def processors(batch: list[int]) -> LogitsProcessorList:
        return LogitsProcessorList([GumbelSampling([seeds[row] for row in batch], config.temperature, model.device)])

    with eval_mode(model):
        return decode(
            model, tokenizer, rows, config.batch_size, config.max_new_tokens, processors,
            desc="sampling completions", repetition_penalty=1.0, no_repeat_ngram_size=0,
        )


def pass_rate_rows(ids: Sequence[str], answers: Sequence[str], completions: Decoded, k: int, reward: Reward = correctness_reward) -> pl.DataFrame:
    """Per prompt (in the order of `ids`): n_correct (completions with reward 1), pass_rate =
    n_correct / k, learnability = p (1 - p), k, completion_tokens and generation_seconds (summed
    over its k completions). `completions` is prompt-major, as `sample_completions` returns it."""
    if len(completions.texts) != len(ids) * k:
        raise ValueError(f"{len(completions.texts)} completions for {len(ids)} prompts and k = {k}")
    correct = np.array([reward(text, answers[row // k]) for row, text in enumerate(completions.texts)], dtype=float).reshape(-1, k)
    n_correct = (correct >= 1.0).sum(axis=1)
    pass_rate = n_correct / k
    return pl.DataFrame({
        "id": list(ids),
        "pass_rate": pass_rate,
        "learnability": pass_rate * (1.0 - pass_rate),
        "n_correct": n_correct.astype(np.int32),
        "k": np.full(len(ids), k, dtype=np.int32),
        "completion_tokens": np.asarray(completions.tokens, dtype=np.int64).reshape(-1, k).sum(axis=1),
        "generation_seconds": np.asarray(completions.seconds, dtype=float).reshape(-1, k).sum(axis=1),
    }, schema_overrides={"id": pl.String})


def estimate_pass_rates(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: pl.DataFrame,
    config: PassRateConfig = PassRateConfig(),
    reward: Reward = correctness_reward,
) -> pl.DataFrame:
    """The pass rates of `prompts` (one row each: id, answer, input_ids, as the shards and the
    canonical prompts give them; other columns are kept) or of a seeded sample of them, sorted by
    id: the prompt's columns other than input_ids and answer, then `pass_rate_rows`' columns."""
    missing = [c for c in REQUIRED_COLUMNS if c not in prompts.columns]
    if missing:
        raise ValueError(f"prompts lack columns {missing}; they have {prompts.columns}")
    chosen = sample_prompts(prompts, config.sample, config.seed)
    ids = chosen["id"].to_list()
    completions = sample_completions(model, tokenizer, ids, chosen["input_ids"].to_list(), config)
    rows = pass_rate_rows(ids, chosen["answer"].to_list(), completions, config.k, reward)
    return pl.concat([chosen.drop("id", "answer", "input_ids"), rows], how="horizontal").select("id", pl.exclude("id"))


def code_version() -> str:
    """Digest of the source that defines a pass rate: sampling, decoding, the reward and the answer parser."""
    source = "".join(inspect.getsource(part) for part in (GumbelSampling, draw_seed, sample_prompts, sample_completions, pass_rate_rows, decode, rewards, answer_parser))
    return hashlib.blake2b(source.encode(), digest_size=6).hexdigest()


def rate_checkpoint(target: CheckpointTarget, config: PassRateConfig = PassRateConfig()) -> PassRateSummary:
    """Estimate the pass rates of `target`'s checkpoint on the prompt tokens of its dataset
    version's current shard set (the tokens its angle scores were computed on) and publish
    them under the same key as those scores: the one call the asset makes."""
    plan = target.plan()
    shards = pl.concat([
        pl.read_parquet(plan.shard(i).path, columns=["id", "input_ids", "n_tokens", "truncated"]) for i in range(len(plan.shards.shards))
    ])
    prompts = shards.join(pl.read_parquet(target.prompts, columns=["id", "answer"]), on="id", how="inner")
    rows = estimate_pass_rates(target.load_model(), target.load_tokenizer(check_shards=True), prompts, config)
    return publish_pass_rates(target.layout, plan.key, rows, plan.context, config, code_version())
