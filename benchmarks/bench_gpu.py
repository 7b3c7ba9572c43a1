"""GPU benchmark: gainrl's scorer on a Qwen2.5-0.5B-shaped model against the published procedure.

The model has Qwen2.5-0.5B's shape (hidden 896, 24 layers, 14 heads, 2 key/value heads,
intermediate 4864, vocabulary 151936, tied embeddings) with random weights, built from its
config, so nothing is downloaded; its tokenizer is trained locally on chat-formatted MATH-like
problems (as `bench_scorer.py` does; every id is below the vocabulary). It scores 2,000
MATH-like prompts (`math_prompts.py`, 150-600 tokens) under the R1 system prompt and the
one-shot "What is 2+2?" turn, on one device, in the dtype the rule picks there (`--dtype auto`:
bfloat16 on an Ampere or later GPU), and measures:

- gainrl: `score_and_publish` over the tokenized shards (the `gainrl score` path: length-sorted
  batches under a token budget, the shared prefix's key/value cache broadcast on the device,
  SDPA attention, out-of-memory back-off), one untimed warm-up run, then the median of --reps
  runs; prompt tokens per second and the fraction of the device's dense bf16 peak reached;
- published: the published one-prompt-per-forward procedure through the project's rewrite
  (`published_data_processor.py`: its chat conversion, its hook on `mlp.up_proj`, a full forward
  with the LM head under `no_grad`, every activation kept, its angle formula), in this process,
  on the same device and dtype, over the first --published-prompts prompts; the ratio is gainrl's
  prompt tokens/s over the published procedure's (tokenization is outside both timings);
- agreement: the Spearman correlation of gainrl's scores with the score formula applied to the
  published procedure's activations of the same prompts (token ids checked equal), i.e. the same
  ranking from one full forward per prompt. The published formula itself (Qwen's hard-coded
  110/6-token offsets, sliced twice) ranks differently by design; its Spearman is recorded only.

FLOPs of a forward (model FLOPs: the work a forward does on the real tokens, padding excluded):

    FLOPs = 2 * N * T + 4 * n_layers * d_attn * C

- T: tokens run; C: the sum over those tokens of the number of positions each attends to
  (a token at position p attends to p + 1 positions under causal attention);
- d_attn = n_heads * head_dim (896 here); the attention term counts Q.K^T and the weighted
  sum of V, 2 * d_attn FLOPs each per (query, key) pair;
- N, gainrl: the parameters of the decoder layers (attention, MLP, norms) minus the last layer's
  MLP, which the scorer never runs; the embedding lookup and the LM head do not run. T: each
  shard's shared prefix once, plus every prompt's tokens after it;
- N, published: all decoder layers plus the LM head (vocabulary x hidden, tied to the embedding,
  run on every token); T: every prompt's tokens.

The fraction of peak is FLOPs / seconds / the device's dense (non-sparse) bf16 tensor peak from
the vendor's data sheet (`DENSE_BF16_TFLOPS`); it is null on a CPU or an unlisted device.

    python benchmarks/bench_gpu.py            # on a GPU, sized for <= 4 minutes on one H100; writes benchmarks/results/bench_gpu.json
    python benchmarks/bench_gpu.py --smoke    # the same code on the CPU with a tiny shape, 32 prompts, in under a minute
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]  # run from a checkout without installing

from bench_scorer import MAX_TOKENS, Shape, tokenizer_corpus, write_prompts  # noqa: E402
from math_prompts import MathPromptConfig  # noqa: E402

from gainrl_ops.core.stats import spearman  # noqa: E402

if TYPE_CHECKING:
    import torch

    from gainrl_ops.scoring.config import ScoreConfig

RESULTS = HERE / "results" / "bench_gpu.json"
QWEN25_05B = Shape("qwen2.5-0.5b", vocab_size=151936, tokenizer_vocab=32000, hidden_size=896, intermediate_size=4864,
                   num_layers=24, num_heads=14, num_kv_heads=2, n_prompts=2000)
SMOKE = Shape("smoke", vocab_size=512, tokenizer_vocab=512, hidden_size=64, intermediate_size=128, num_layers=2,
              num_heads=2, num_kv_heads=1, n_prompts=32)
MAX_POSITIONS = 32768  # Qwen2.5-0.5B's
PUBLISHED_PROMPTS = 1000  # one forward each: about 15-30 ms per prompt on an H100
GPU_BATCH_TOKENS = 32768  # a GPU needs far larger batches than the CPU default; the back-off halves it if it does not fit
GPU_BATCH_SIZE = 256
SHARD_SIZE = 1024
AGREEMENT = 0.99  # Spearman, gainrl against the formula on the published activations (both bf16 on a GPU)
TIME_LIMIT_S = 240.0

# Dense (non-sparse) bf16 tensor-core peaks in TFLOPS, from the vendors' data sheets; the first
# pattern that matches `torch.cuda.get_device_name()` wins, so the specific names come first.
DENSE_BF16_TFLOPS: tuple[tuple[str, str, float], ...] = (
    (r"H100.*PCIe", "H100 PCIe", 756.0),
    (r"H100 NVL", "H100 NVL", 835.0),
    (r"H200 NVL", "H200 NVL", 835.0),
    (r"GH200", "GH200", 989.4),
    (r"H200", "H200 SXM", 989.4),
    (r"H100|H800", "H100 SXM", 989.4),
    (r"B200", "B200", 2250.0),
    (r"A100|A800", "A100", 312.0),
    (r"L40S", "L40S", 362.05),
    (r"L40\b", "L40", 181.05),
    (r"\bL4\b", "L4", 121.0),
    (r"A10G", "A10G", 70.0),
    (r"\bA10\b", "A10", 125.0),
    (r"RTX 6000 Ada", "RTX 6000 Ada", 364.25),
    (r"RTX A6000", "RTX A6000", 154.8),
    (r"RTX 4090", "GeForce RTX 4090 (fp32 accumulate)", 165.2),
    (r"RTX 3090", "GeForce RTX 3090 (fp32 accumulate)", 71.0),
    (r"MI300X", "Instinct MI300X", 1307.4),
)


def dense_bf16_peak(device_name: str) -> tuple[str, float] | None:
    """(which entry, its dense bf16 TFLOPS) for a device name, or None for an unlisted one."""
    for pattern, label, tflops in DENSE_BF16_TFLOPS:
        if re.search(pattern, device_name):
            return label, tflops
    return None


def causal_contexts(start: int, end: int) -> int:
    """Sum over positions start..end-1 of the positions each attends to (p + 1)."""
    return (end * (end + 1) - start * (start + 1)) // 2


def forward_flops(params: int, tokens: int, layers: int, attention_width: int, contexts: int) -> int:
    """2 * N * T + 4 * n_layers * d_attn * C (see the module docstring)."""
    return 2 * params * tokens + 4 * layers * attention_width * contexts


@dataclass(frozen=True)
class Counts:
    """The parameter counts the FLOPs use."""

    total: int
    embedding: int
    decoder_layers: int
    last_mlp: int
    attention_width: int
    layers: int

    @property
    def gainrl_per_token(self) -> int:
        return self.decoder_layers - self.last_mlp

    @property
    def published_per_token(self) -> int:
        return self.decoder_layers + self.embedding  # the tied LM head runs on every token


def count_parameters(model: torch.nn.Module) -> Counts:
    from gainrl_ops.scoring.capture import decoder_layers, last_mlp

    layers = decoder_layers(model)
    config = model.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return Counts(
        total=sum(p.numel() for p in model.parameters()),
        embedding=model.get_input_embeddings().weight.numel(),
        decoder_layers=sum(p.numel() for p in layers.parameters()),
        last_mlp=sum(p.numel() for p in last_mlp(model).parameters()),
        attention_width=config.num_attention_heads * head_dim,
        layers=len(layers),
    )


# --------------------------------------------------------------------------- model and prompts


def build_checkpoint(shape: Shape, corpus: list[str], target: Path, dtype: str) -> dict[str, object]:
    """Tokenizer trained on `corpus`, random weights (seeded, made on the CPU so that they do not
    depend on the device), saved in `dtype` so that `torch_dtype="auto"` loads that dtype too."""
    import torch
    from transformers import Qwen2ForCausalLM

    from gainrl_ops.training.embedded import qwen2_config, train_tokenizer

    tokenizer = train_tokenizer(corpus, shape.tokenizer_vocab)
    config = qwen2_config(tokenizer, shape.hidden_size, shape.intermediate_size, shape.num_layers, shape.num_heads,
                          shape.num_kv_heads, max_positions=MAX_POSITIONS, vocab_size=shape.vocab_size)
    torch.manual_seed(shape.seed)
    model = Qwen2ForCausalLM(config).to(getattr(torch, dtype))
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    counts = count_parameters(model)
    return {**asdict(shape), "model_vocab_size": config.vocab_size, "tokenizer_size": len(tokenizer),
            "tie_word_embeddings": config.tie_word_embeddings, "saved_dtype": dtype, "parameters": asdict(counts)}


# --------------------------------------------------------------------------- gainrl


class _BackoffCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "memory on" in record.getMessage():
            self.lines.append(record.getMessage())


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_gainrl(model_dir: Path, prompts: Path, root: Path, device: str, config: ScoreConfig, reps: int) -> dict[str, object]:
    """The `gainrl score` path in this process: load, tokenize into shards, then score and
    publish, once untimed and `reps` times timed (the published folder removed before each)."""
    import published_data_processor as published

    from gainrl_ops.core.layout import Layout
    from gainrl_ops.data.prompts import PromptConfig
    from gainrl_ops.data.shards import tokenize_to_shards
    from gainrl_ops.data.sources import DatasetSource, prepare_dataset
    from gainrl_ops.scoring.checkpoints import unregistered
    from gainrl_ops.scoring.models import load_tokenizer
    from gainrl_ops.scoring.scorer import score_and_publish
    from gainrl_ops.scoring.target import CheckpointTarget

    layout = Layout(root)
    source = DatasetSource(path=str(prompts), name="bench")
    loaded, label = prepare_dataset(source, layout)
    prompt = PromptConfig(system_prompt=published.R1_SYSTEM_PROMPT, few_shot=((published.FEW_SHOT_QUESTION, published.FEW_SHOT_ANSWER),),
                          max_tokens=MAX_TOKENS)
    tokenize_to_shards(loaded.table, load_tokenizer(str(model_dir)), prompt, layout, source.name, label.version, shard_size=SHARD_SIZE)
    target = CheckpointTarget(layout, source, label.version, unregistered(str(model_dir), name="bench"), prompt, "auto", device)
    model = target.load_model()
    plan = target.plan()

    counter = _BackoffCounter()
    logging.getLogger("gainrl_ops.scoring.scorer").addHandler(counter)
    seconds = []
    try:
        for rep in range(reps + 1):  # the first is the warm-up (kernel choice, allocator, caches)
            shutil.rmtree(plan.final, ignore_errors=True)
            synchronize(device)
            started = time.perf_counter()
            summary = score_and_publish(model, plan, config, progress=False)
            synchronize(device)
            if rep:
                seconds.append(time.perf_counter() - started)
    finally:
        logging.getLogger("gainrl_ops.scoring.scorer").removeHandler(counter)

    rows = []
    for index, (shard, prefix) in enumerate(zip(plan.shards.shards, summary.prefix_tokens, strict=True)):
        table = pq.read_table(shard.path, columns=["id", "input_ids", "n_tokens", "system_start", "system_end", "question_start", "question_end"])
        rows += [{**row, "shard": index, "prefix": prefix} for row in table.to_pylist()]
    scores = pq.read_table(plan.ranked_scores, columns=["id", "angle_score"]).to_pydict()
    return {
        "model": model, "dtype": target.dtype, "seconds": seconds, "rows": rows, "scores": dict(zip(scores["id"], scores["angle_score"])),
        "problems": loaded.table.select(["id", "problem"]).to_pylist(),
        "shards": len(plan.shards.shards), "prefix_tokens": list(summary.prefix_tokens), "scoring_mode": summary.scoring_mode,
        "backoffs": counter.lines,
    }


def gainrl_work(rows: list[dict[str, object]]) -> dict[str, int]:
    """Prompt tokens, tokens run and attended positions of one scoring run: each shard's shared
    prefix once, then every prompt's tokens after it."""
    prefixes = {int(r["shard"]): int(r["prefix"]) for r in rows}
    run = sum(prefixes.values()) + sum(int(r["n_tokens"]) - int(r["prefix"]) for r in rows)
    contexts = sum(causal_contexts(0, p) for p in prefixes.values()) + sum(
        causal_contexts(int(r["prefix"]), int(r["n_tokens"])) for r in rows)
    return {"prompt_tokens": sum(int(r["n_tokens"]) for r in rows), "run_tokens": run, "contexts": contexts}


# --------------------------------------------------------------------------- published


def run_published(model_dir: Path, problems: list[dict[str, str]], device: str) -> dict[str, object]:
    """The published procedure (steps 1-4 of `published_data_processor.py`) in this process, with
    the model on `device` (the script's `device_map="auto"` could spread it over several GPUs):
    each prompt tokenized first (outside the timing), then one forward each, every activation
    kept, then the published angle formula."""
    import published_data_processor as published
    import torch
    import torch.nn.functional as F
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), torch_dtype="auto", device_map={"": device})
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    target = f"model.layers.{len(model.model.layers) - 1}.mlp.up_proj"
    model.eval()
    chats = published.to_chat(Dataset.from_list([{"problem": p["problem"], "answer": ""} for p in problems]), chunk_size=500)
    started = time.perf_counter()
    encoded = []
    for conversation in chats["prompt"]:
        text = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        encoded.append(tokenizer([text], return_tensors="pt", truncation=True, max_length=published.MAX_LENGTH))
    tokenize_seconds = time.perf_counter() - started

    def forward(inputs) -> dict[str, torch.Tensor]:
        store: dict[str, torch.Tensor] = {}
        handles = published.hook_input(model, target, store)
        with torch.no_grad():
            model(**inputs.to(device))
        for handle in handles:
            handle.remove()
        return store

    forward(encoded[0])  # warm-up
    synchronize(device)
    started = time.perf_counter()
    activations = [forward(inputs) for inputs in encoded]
    synchronize(device)
    forward_seconds = time.perf_counter() - started

    started = time.perf_counter()
    values = []
    for store in activations:
        hidden = store[target].squeeze(0).float()
        unit = F.normalize(hidden, p=2, dim=1)
        cos = unit @ unit.T
        cos = cos * torch.tril(torch.ones_like(cos), diagonal=1)
        s, t = published.SYSTEM_OFFSET, published.TAIL_OFFSET
        values.append(cos[s:-t][s:-t].mean() + published.INTER_WEIGHT * cos[s:-t][:s].mean())
    values_cpu = torch.stack(values).double().cpu().numpy()  # the published code's own sync point (torch.tensor(values))
    angle_seconds = time.perf_counter() - started
    lengths = [int(inputs["input_ids"].shape[1]) for inputs in encoded]
    result = {
        "ids": [p["id"] for p in problems], "input_ids": [inputs["input_ids"][0].tolist() for inputs in encoded],
        "hidden": [store[target][0] for store in activations], "published_values": values_cpu,
        "tokenize_seconds": tokenize_seconds, "forward_seconds": forward_seconds, "angle_seconds": angle_seconds,
        "lengths": lengths, "dtype": str(model.dtype).removeprefix("torch."), "counts": count_parameters(model),
    }
    del model
    return result


def formula_on_published(published: dict[str, object], rows: dict[str, dict[str, object]], inter_weight: float) -> dict[str, object]:
    """gainrl's score formula on the published procedure's activations, with the shards' spans
    (only where the published tokenization gave the shard's token ids)."""
    import torch

    from gainrl_ops.scoring.angles import angle_concentration

    values, same = [], 0
    for pid, ids, hidden in zip(published["ids"], published["input_ids"], published["hidden"], strict=True):
        row = rows[pid]
        if ids != row["input_ids"]:
            values.append(np.nan)
            continue
        same += 1
        positions = torch.arange(len(ids), device=hidden.device)
        question = (positions >= row["question_start"]) & (positions < row["question_end"])
        system = (positions >= row["system_start"]) & (positions < row["system_end"])
        score = angle_concentration(hidden[None], question[None], system[None], inter_weight).angle_score
        values.append(float(score.double().cpu()))
    return {"values": np.asarray(values), "same_token_ids": same}


# --------------------------------------------------------------------------- report


def device_info(device: str) -> dict[str, object]:
    import torch
    import transformers

    info: dict[str, object] = {"device": device, "torch": torch.__version__, "transformers": transformers.__version__,
                               "python": platform.python_version(), "platform": platform.platform(), "cpu": platform.processor()}
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    info["git_commit"] = commit
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        info.update(name=props.name, capability=f"{props.major}.{props.minor}", memory_gib=round(props.total_memory / 2**30, 1),
                    cuda=torch.version.cuda, visible_devices=torch.cuda.device_count())
    else:
        info["name"] = "cpu"
    return info


def peak_entry(info: dict[str, object], dtype: str) -> dict[str, object]:
    if not str(info["device"]).startswith("cuda"):
        return {"tflops": None, "entry": None, "why_none": "a CPU: no dense bf16 tensor peak in the table"}
    if dtype != "bfloat16":
        return {"tflops": None, "entry": None, "why_none": f"ran in {dtype}; the table holds bf16 peaks"}
    found = dense_bf16_peak(str(info["name"]))
    if found is None:
        return {"tflops": None, "entry": None, "why_none": f"{info['name']} is not in DENSE_BF16_TFLOPS"}
    return {"tflops": found[1], "entry": found[0], "why_none": None}


def throughput(seconds: float, tokens: int, flops: int, peak_tflops: float | None) -> dict[str, object]:
    achieved = flops / seconds / 1e12
    return {"seconds": seconds, "prompt_tokens_per_s": tokens / seconds, "flops": flops, "achieved_tflops": achieved,
            "peak_fraction": None if peak_tflops is None else achieved / peak_tflops}


def bench(args: argparse.Namespace) -> dict[str, object]:
    import published_data_processor as published
    import torch

    from gainrl_ops.scoring.config import ScoreConfig
    from gainrl_ops.scoring.hardware import resolve_device, resolve_dtype

    started = time.perf_counter()
    shape = replace(SMOKE if args.smoke else QWEN25_05B, n_prompts=args.prompts, seed=args.seed)
    device = resolve_device(args.device)
    dtype = resolve_dtype("auto", device)
    on_gpu = device.startswith("cuda")
    if not on_gpu and not args.smoke and args.device == "auto":
        raise SystemExit("bench_gpu: no CUDA device is visible; --smoke runs the CPU check, --device cpu the full shape on the CPU")
    config = ScoreConfig(max_batch_tokens=args.batch_tokens or (GPU_BATCH_TOKENS if on_gpu else ScoreConfig.max_batch_tokens),
                         max_batch_size=args.batch_size or (GPU_BATCH_SIZE if on_gpu else ScoreConfig.max_batch_size))
    info = device_info(device)
    peak = peak_entry(info, dtype)
    print(f"== {info['name']} ({device}), {dtype}; shape {shape.name}, {shape.n_prompts} prompts", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_gpu.") as tmp:
        root = Path(tmp)
        clock = time.perf_counter()
        model_dir = root / "model"
        model_info = build_checkpoint(shape, tokenizer_corpus(300 if args.smoke else 2000, seed=args.seed + 1), model_dir, dtype)
        prompts = root / "prompts.json"
        prompt_info = write_prompts(model_dir, MathPromptConfig(shape.n_prompts, seed=args.seed), prompts)
        setup_seconds = time.perf_counter() - clock
        params = model_info["parameters"]
        print(f"   model: {params['total'] / 1e6:.0f}M parameters ({params['decoder_layers'] / 1e6:.0f}M in the decoder layers), "
              f"tokenizer {model_info['tokenizer_size']}; prompts {prompt_info['tokens_min']}-{prompt_info['tokens_max']} tokens; "
              f"set-up {setup_seconds:.0f} s", flush=True)

        if on_gpu:
            torch.cuda.reset_peak_memory_stats()
        ours = run_gainrl(model_dir, prompts, root / "home", device, config, args.reps)
        counts = count_parameters(ours.pop("model"))
        memory = torch.cuda.max_memory_allocated() / 2**30 if on_gpu else None
        if on_gpu:
            torch.cuda.empty_cache()
        work = gainrl_work(ours["rows"])
        median = statistics.median(ours["seconds"])
        flops = forward_flops(counts.gainrl_per_token, work["run_tokens"], counts.layers, counts.attention_width, work["contexts"])
        gainrl = {"dtype": ours["dtype"], "score_config": asdict(config), "shards": ours["shards"], "prefix_tokens": ours["prefix_tokens"],
                  "scoring_mode": ours["scoring_mode"], "runs_s": ours["seconds"], **work, **throughput(median, work["prompt_tokens"], flops, peak["tflops"]),
                  "run_tokens_per_s": work["run_tokens"] / median, "oom_backoffs": ours["backoffs"], "max_memory_allocated_gib": memory}
        print(f"   gainrl: {median:.2f} s for {work['prompt_tokens']} prompt tokens ({gainrl['prompt_tokens_per_s']:.0f} tokens/s), "
              f"{gainrl['achieved_tflops']:.2f} TFLOPS" + (f", {gainrl['peak_fraction']:.1%} of peak" if gainrl["peak_fraction"] is not None else ""),
              flush=True)

        subset = ours["problems"][: args.published_prompts]
        theirs = run_published(model_dir, subset, device)
        lengths = theirs["lengths"]
        pub_seconds = theirs["forward_seconds"] + theirs["angle_seconds"]
        pub_flops = forward_flops(counts.published_per_token, sum(lengths), counts.layers, counts.attention_width,
                                  sum(causal_contexts(0, n) for n in lengths))
        published_run = {"dtype": theirs["dtype"], "n_prompts": len(subset), "of_prompts": len(ours["problems"]),
                         "prompt_tokens": sum(lengths), "tokenize_s_untimed": theirs["tokenize_seconds"], "forward_s": theirs["forward_seconds"],
                         "angle_s": theirs["angle_seconds"], **throughput(pub_seconds, sum(lengths), pub_flops, peak["tflops"]),
                         "nan_values": int(np.isnan(theirs["published_values"]).sum())}
        print(f"   published: {pub_seconds:.2f} s for {published_run['prompt_tokens']} prompt tokens of its first {len(subset)} prompts "
              f"({published_run['prompt_tokens_per_s']:.0f} tokens/s)", flush=True)

        rows = {str(r["id"]): r for r in ours["rows"]}
        same = formula_on_published(theirs, rows, published.INTER_WEIGHT)
        gainrl_scores = np.array([ours["scores"][pid] for pid in theirs["ids"]], dtype=np.float64)
        rho = spearman(gainrl_scores, same["values"])
        agreement = {"spearman": rho, "n": len(subset), "same_token_ids": same["same_token_ids"], "goal": f">= {AGREEMENT}",
                     "met": bool(rho >= AGREEMENT) and same["same_token_ids"] == len(subset),
                     "max_abs_diff": float(np.nanmax(np.abs(gainrl_scores - same["values"]))),
                     "published_formula_spearman": spearman(gainrl_scores, theirs["published_values"])}
        print(f"   agreement: Spearman {rho:.5f} over {len(subset)} prompts ({same['same_token_ids']} with the same token ids)", flush=True)
        del theirs

    total = time.perf_counter() - started
    return {
        "smoke": args.smoke,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": info,
        "peak": {"dense_bf16_tflops": peak["tflops"], "entry": peak["entry"], "why_none": peak["why_none"],
                 "table": [{"pattern": p, "device": d, "dense_bf16_tflops": t} for p, d, t in DENSE_BF16_TFLOPS]},
        "flops_formula": "2 * N * T + 4 * n_layers * d_attn * C (module docstring); gainrl N = decoder layers minus the last MLP, "
                         "T = each shard's prefix once + every prompt's tokens after it; published N = decoder layers + LM head, T = every prompt's tokens",
        "model": model_info,
        "prompts": prompt_info,
        "gainrl": gainrl,
        "published": published_run,
        "ratio": {"prompt_tokens_per_s": gainrl["prompt_tokens_per_s"] / published_run["prompt_tokens_per_s"],
                  "definition": "gainrl prompt tokens/s over all prompts / published prompt tokens/s over its first n_prompts (tokenization outside both)"},
        "agreement": agreement,
        "setup_s": setup_seconds,
        "total_s": total,
        "time_limit_s": TIME_LIMIT_S,
        "within_time_limit": total <= TIME_LIMIT_S,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="the same code on the CPU with a tiny shape and 32 prompts (under a minute)")
    parser.add_argument("--device", help="torch device (default: auto, i.e. CUDA when present; cpu with --smoke)")
    parser.add_argument("--prompts", type=int, help=f"prompts gainrl scores (default {QWEN25_05B.n_prompts}; {SMOKE.n_prompts} with --smoke)")
    parser.add_argument("--published-prompts", type=int, help=f"the first N of them run by the published procedure (default {PUBLISHED_PROMPTS}; all with --smoke)")
    parser.add_argument("--reps", type=int, help="timed gainrl runs after one warm-up (default 3; 1 with --smoke)")
    parser.add_argument("--batch-tokens", type=int, help=f"ScoreConfig.max_batch_tokens (default {GPU_BATCH_TOKENS} on a GPU, the library default elsewhere)")
    parser.add_argument("--batch-size", type=int, help=f"ScoreConfig.max_batch_size (default {GPU_BATCH_SIZE} on a GPU, the library default elsewhere)")
    parser.add_argument("--seed", type=int, default=2024, help="seed of the prompts and weights (the tokenizer corpus uses seed + 1)")
    parser.add_argument("--out", type=Path, help="JSON results (default benchmarks/results/bench_gpu.json; with --smoke a temporary file)")
    args = parser.parse_args(argv)
    args.device = args.device or ("cpu" if args.smoke else "auto")
    args.prompts = args.prompts or (SMOKE.n_prompts if args.smoke else QWEN25_05B.n_prompts)
    args.published_prompts = min(args.published_prompts or (args.prompts if args.smoke else PUBLISHED_PROMPTS), args.prompts)
    args.reps = args.reps or (1 if args.smoke else 3)
    args.out = args.out or (Path(tempfile.gettempdir()) / "bench_gpu_smoke.json" if args.smoke else RESULTS)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = bench(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.out.with_name(args.out.name + ".tmp")
    temporary.write_text(json.dumps(report, indent=2, default=float) + "\n")
    temporary.replace(args.out)
    g, p, a = report["gainrl"], report["published"], report["agreement"]
    print(f"\ngainrl {g['prompt_tokens_per_s']:.0f} prompt tokens/s, published {p['prompt_tokens_per_s']:.0f}: "
          f"{report['ratio']['prompt_tokens_per_s']:.1f}x; Spearman {a['spearman']:.5f}; total {report['total_s']:.0f} s -> {args.out}")
    if not a["met"]:
        print(f"ERROR: the rankings disagree (Spearman {a['spearman']:.5f}, goal {a['goal']}; "
              f"{a['same_token_ids']} of {a['n']} prompts with the same token ids)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
