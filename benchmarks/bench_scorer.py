"""Benchmark: `gainrl score` against the published GAIN-RL data_processor.py, as a user runs them.

The competitor is `published_data_processor.py`: the published scoring step, step for step
(R1 system prompt, one-shot "What is 2+2?" turn, torch_dtype="auto", device_map="auto",
truncation at 1024 tokens, one prompt per forward, full forward with the LM head, a hook on
the input of the last layer's mlp.up_proj, every activation kept to the end, L x L cosine
matrices). Its differences from the published file are listed in its docstring and in the
results. gainrl runs as the command a user types, with the same system prompt and shot:

    gainrl score --data prompts.json --model MODEL --name bench --system-prompt R1 \\
        --few-shot shot.json --dtype float32 --max-tokens 1024

Both score the same MATH-like prompts (benchmarks/math_prompts.py, 150-600 tokens under each
model's tokenizer) with the same random-initialised fp32 Qwen2, saved with save_pretrained and
a locally trained tokenizer, at two shapes: about 4M parameters with a 512-token vocabulary,
and about 32M (hidden 512, 4 layers, 32k vocabulary). For each shape it measures:

- whole process: wall clock of a fresh interpreter per run, imports included, gainrl and the
  published script alternated, median of --reps runs; scoring only: inside the same runs,
  from the loaded model to the scores (gainrl: `score_and_publish`, parts written and
  compacted; published: the forwards and the angle step, its per-prompt tokenization taken
  out); throughput in prompts/s and tokens/s; peak RSS (VmHWM of the child);
- the floor: a bare forward (no hooks) over each prompt's tokens after the prefix that all
  prompts of a shard share, batched as the scorer batches, through the layers the score
  needs (the last layer's MLP and the final norm replaced by identities, no LM head), in a
  fresh process, median of --reps passes; and scoring-only / floor;
- the start-up floor: a fresh interpreter that imports torch and transformers, loads the
  tokenizer and the model and exits (collector paused, as in `gainrl score`), median of --reps
  runs; published whole process / (start-up floor + floor) is the ceiling: the most that any
  scorer built on transformers, running the same forward in the same precision, can reach;
- per phase, both sides, in fresh processes of the same runs: import (launch to the first
  step), load (dataset and model), tokenize, score, write, refresh (the SQL catalog) and
  other. gainrl's come from `gainrl score --profile`; the published script's from its
  `--timings` steps and the end-of-program mark of `timed_child.py`, its code unchanged;
- `--dtype auto`: the dtype it resolves to here (read from the score rows) and, where that
  is bfloat16, its whole-process speedup; and the Spearman agreement of the bf16 and fp32
  rankings of the same prompts (bf16 run directly; the JSON says whether it was native).

Whole-process targets against the published script: >= 3x on the 4M shape (400 prompts),
>= 4x on the 32M shape (160 prompts), both fp32; >= 5x on the 32M shape with `--dtype auto`
where bf16 is native (a CPU with AVX512-BF16 or AMX).

Start-up (light imports): `gainrl sql` on the catalog a scoring run left, against a bare
`duckdb` query of the same file in Python; and importing `pipelines.definitions` (the Dagster
definitions, as every UI reload and every step of the multiprocess executor does) against
`import dagster`; fresh interpreters, alternated, median of 2 x --reps + 1 runs.

A last row scores 1k, 2k, 4k and 8k prompts with a small model and reports the peak RSS of
scoring (above the RSS when scoring starts) at each size: it should stay flat.

    python benchmarks/bench_scorer.py            # the full run: about 12 minutes on 2 idle cores
    python benchmarks/bench_scorer.py --quick    # smoke run (about 3 minutes): tiny models, 12 prompts, 1 repetition
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]  # run from a checkout without installing

from math_prompts import MathPromptConfig, generate  # noqa: E402

from gainrl_ops.core.stats import spearman  # noqa: E402
from gainrl_ops.scoring import hardware  # noqa: E402
from gainrl_ops.scoring.phases import PHASES  # noqa: E402

RESULTS = HERE / "results" / "bench_scorer.json"
PUBLISHED = HERE / "published_data_processor.py"
CHILD = HERE / "timed_child.py"
SCORING_CALL = "gainrl_ops.scoring.scorer:score_and_publish"
MAX_TOKENS = 1024
MIB = 1024  # KiB per MiB

# Targets of issues 9 and 20 (the whole-process ones are per shape: `Shape.whole_target`, `Shape.auto_target`).
FLOOR_RATIO = 1.1
BF16_AGREEMENT = 0.999
FLAT_GROWTH_MIB = 32.0  # scoring peak at the largest size minus at the smallest
STARTUP_RATIO = 1.5  # gainrl sql / bare duckdb query, definitions load / import dagster
STARTUP_QUERY = "SELECT rank, id, round(angle_score, 4) AS angle_score FROM curriculum WHERE rank <= 10 ORDER BY rank"


@dataclass(frozen=True)
class Shape:
    """A random-initialised Qwen2 and the prompts it scores.

    vocab_size: rows of the embedding and the LM head. tokenizer_vocab: the BPE training
    target; a target above what the corpus supports ends where merges run out (whole words).
    whole_target: the whole-process speedup over the published script to reach in fp32, and
    auto_target with `--dtype auto` where bf16 is native (None: measured, no target).
    """

    name: str
    vocab_size: int
    tokenizer_vocab: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    n_prompts: int
    whole_target: float | None = None
    auto_target: float | None = None
    seed: int = 0


SHAPES = (
    Shape("4M", vocab_size=512, tokenizer_vocab=512, hidden_size=256, intermediate_size=1024, num_layers=4,
          num_heads=4, num_kv_heads=2, n_prompts=400, whole_target=3.0),
    Shape("32M", vocab_size=32000, tokenizer_vocab=32000, hidden_size=512, intermediate_size=2048, num_layers=4,
          num_heads=8, num_kv_heads=2, n_prompts=160, whole_target=4.0, auto_target=5.0),
)
MEMORY_SHAPE = Shape("memory", vocab_size=512, tokenizer_vocab=512, hidden_size=64, intermediate_size=128, num_layers=2,
                     num_heads=2, num_kv_heads=1, n_prompts=8000)
MEMORY_SIZES = (1000, 2000, 4000, 8000)


def quick_shapes() -> tuple[tuple[Shape, ...], Shape, tuple[int, ...]]:
    """The same two vocabularies on tiny bodies, a few prompts each."""
    tiny = {"hidden_size": 64, "intermediate_size": 128, "num_layers": 2, "num_heads": 2, "num_kv_heads": 1, "n_prompts": 12}
    return tuple(replace(s, name=s.name + "-quick", **tiny) for s in SHAPES), replace(MEMORY_SHAPE, n_prompts=80), (40, 80)


# --------------------------------------------------------------------------- models and prompts


def chat(question: str) -> list[dict[str, str]]:
    import published_data_processor as published

    return [
        {"role": "system", "content": published.R1_SYSTEM_PROMPT},
        {"role": "user", "content": published.FEW_SHOT_QUESTION},
        {"role": "assistant", "content": published.FEW_SHOT_ANSWER},
        {"role": "user", "content": question},
    ]


def tokenizer_corpus(n: int, seed: int) -> list[str]:
    """Chat-formatted problems (other seeds than the benchmark's) with the R1 head, so that
    markup, system prompt and shot get tokens of their own, as in a real tokenizer."""
    from gainrl_ops.training.embedded import IM_END, IM_START

    records = generate(MathPromptConfig(n, seed=seed), count_tokens=lambda s: len(s) // 4, overhead_tokens=0)
    return ["".join(f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n" for m in chat(r["problem"])) for r in records]


def build_model(shape: Shape, corpus: list[str], target: Path) -> dict[str, object]:
    """Tokenizer trained on `corpus`, random weights, saved like any checkpoint."""
    import torch
    from transformers import Qwen2ForCausalLM

    from gainrl_ops.training.embedded import qwen2_config, train_tokenizer

    tokenizer = train_tokenizer(corpus, shape.tokenizer_vocab)
    config = qwen2_config(
        tokenizer, shape.hidden_size, shape.intermediate_size, shape.num_layers, shape.num_heads, shape.num_kv_heads,
        max_positions=2048, vocab_size=shape.vocab_size,
    )
    torch.manual_seed(shape.seed)
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return {
        **asdict(shape),
        "model_vocab_size": config.vocab_size,
        "tokenizer_size": len(tokenizer),
        "parameters": sum(p.numel() for p in model.parameters()),
        "tie_word_embeddings": True,
        "dtype": "float32",
    }


def write_prompts(model_dir: Path, config: MathPromptConfig, target: Path) -> dict[str, object]:
    """Generate prompts sized for this model's tokenizer; returns their token-length summary."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_tokens(question: str) -> int:
        return count(tokenizer.apply_chat_template(chat(question), tokenize=False, add_generation_prompt=True))

    overhead = prompt_tokens("x") - count("x")
    records = generate(config, count, overhead)
    target.write_text(json.dumps(records))
    lengths = np.array([prompt_tokens(r["problem"]) for r in records])
    return {
        "n": len(records), "seed": config.seed, "target_tokens": [config.min_tokens, config.max_tokens],
        "template_tokens": overhead, "tokens_total": int(lengths.sum()), "tokens_min": int(lengths.min()),
        "tokens_median": float(np.median(lengths)), "tokens_max": int(lengths.max()),
        "over_max_tokens": int((lengths > MAX_TOKENS).sum()),
    }


# --------------------------------------------------------------------------- runs


def child_env(home: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    if home is not None:
        env["GAINRL_HOME"] = str(home)
    return env


def run_child(args: list[str], log: Path, env: dict[str, str]) -> float:
    """Run a command to completion; its wall-clock seconds. Output goes to `log`."""
    with open(log, "w") as out:
        started = time.perf_counter()
        done = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        seconds = time.perf_counter() - started
    if done.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-25:])
        raise RuntimeError(f"{' '.join(args[:8])} ... exited with {done.returncode}; last lines of {log}:\n{tail}")
    return seconds


def gainrl_phases(launched_at: float, wall: float, profile: dict) -> dict[str, float]:
    """`gainrl score --profile`'s phases against the wall clock the parent saw: import is from
    the launch to the command's first mark plus the imports it times itself; other is what no
    phase covers (the dataset summary and top-prompt printing, interpreter exit)."""
    seconds = {name: float(profile["seconds"].get(name, 0.0)) for name in PHASES}
    seconds["import"] += profile["started_at"] - launched_at
    return {**seconds, "other": wall - sum(seconds.values())}


def published_phases(launched_at: float, wall: float, child: dict, steps: dict) -> dict[str, float]:
    """The published script's steps (its `--timings`) in the same phases, its code unchanged:
    import is from the launch to the end of the program (timed_child's mark) less its timed
    steps, i.e. interpreter start, imports and argument parsing; load is the model, the
    tokenizer, the JSON read and the `datasets` chat formatting; tokenize its per-prompt
    template and tokenizer calls; score the forwards and the angle step; write the
    `torch.save`; it refreshes no catalog."""
    main = sum(float(steps[key]) for key in ("load_seconds", "prepare_seconds", "collect_seconds", "angle_seconds", "save_seconds"))
    seconds = {
        "import": child["program_ended_at"] - launched_at - main,
        "load": steps["load_seconds"] + steps["prepare_seconds"],
        "tokenize": steps["tokenize_seconds"],
        "score": steps["collect_seconds"] - steps["tokenize_seconds"] + steps["angle_seconds"],
        "write": steps["save_seconds"],
        "refresh": 0.0,
    }
    return {**seconds, "other": wall - sum(seconds.values())}


def run_gainrl(model_dir: Path, prompts: Path, shot: Path, work: Path, dtype: str) -> dict[str, object]:
    """One `gainrl score` in a fresh interpreter and a fresh storage root."""
    import published_data_processor as published

    work.mkdir(parents=True)
    report, profile = work / "child.json", work / "phases.json"
    command = [
        sys.executable, str(CHILD), str(report), "--time", SCORING_CALL, "--",
        "-m", "gainrl_ops.cli", "score", "--data", str(prompts), "--model", str(model_dir), "--name", "bench",
        "--system-prompt", published.R1_SYSTEM_PROMPT, "--few-shot", str(shot),
        "--dtype", dtype, "--max-tokens", str(MAX_TOKENS), "--profile", str(profile),
    ]
    load, launched_at = os.getloadavg()[0], time.time()
    wall = run_child(command, work / "log.txt", child_env(work / "home"))
    child = json.loads(report.read_text())
    if len(child["calls"]) != 1:
        raise RuntimeError(f"{SCORING_CALL} ran {len(child['calls'])} times in one `gainrl score` (expected once): "
                           "the benchmark times scoring through that function")
    call = child["calls"][0]
    scores = pq.read_table(_one(work / "home" / "scores", "**/scores.parquet"), columns=["id", "angle_score", "dtype", "n_tokens"])
    return {
        "wall_s": wall, "scoring_s": call["seconds"], "peak_mib": child["peak_kib"] / MIB,
        "scoring_peak_above_start_mib": (call["peak_kib"] - call["rss_start_kib"]) / MIB if call["peak_reset"] else None,
        "rows": scores.num_rows, "tokens": int(np.sum(scores.column("n_tokens").to_numpy())),
        "dtype": sorted(set(scores.column("dtype").to_pylist())), "loadavg_before": load, "loadavg_after": os.getloadavg()[0],
        "phases": gainrl_phases(launched_at, wall, json.loads(profile.read_text())),
    }


def run_published(model_dir: Path, prompts: Path, work: Path) -> dict[str, object]:
    """One run of the published script in a fresh interpreter."""
    work.mkdir(parents=True)
    report, timings = work / "child.json", work / "timings.json"
    command = [
        sys.executable, str(CHILD), str(report), "--", str(PUBLISHED), "--model_name", str(model_dir),
        "--dataset_path", str(prompts), "--save_path", str(work / "indices.pt"), "--gpu_id", "-1", "--timings", str(timings),
    ]
    load, launched_at = os.getloadavg()[0], time.time()
    wall = run_child(command, work / "log.txt", child_env())
    child, steps = json.loads(report.read_text()), json.loads(timings.read_text())
    return {
        "wall_s": wall, "scoring_s": steps["collect_seconds"] - steps["tokenize_seconds"] + steps["angle_seconds"],
        "peak_mib": child["peak_kib"] / MIB, "rows": steps["n_prompts"], "tokens": steps["n_tokens"], "dtype": [steps["dtype"]],
        "steps": steps, "loadavg_before": load, "loadavg_after": os.getloadavg()[0],
        "phases": published_phases(launched_at, wall, child, steps),
    }


def _one(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    if len(found) != 1:
        raise RuntimeError(f"{folder}: expected one {pattern}, found {len(found)}")
    return found[0]


def read_scores(work: Path) -> dict[str, float]:
    table = pq.read_table(_one(work / "home" / "scores", "**/scores.parquet"), columns=["id", "angle_score"]).to_pydict()
    return dict(zip(table["id"], table["angle_score"]))


def bf16_agreement(fp32: dict[str, float], bf16: dict[str, float]) -> dict[str, object]:
    ids = sorted(fp32)
    a = np.array([fp32[i] if fp32[i] is not None else np.nan for i in ids])
    b = np.array([bf16.get(i) if bf16.get(i) is not None else np.nan for i in ids])
    return {"spearman": spearman(a, b), "max_abs_diff": float(np.nanmax(np.abs(a - b))), "n": len(ids)}


def run_floor(model_dir: Path, gainrl_work: Path, reps: int, work: Path) -> dict[str, object]:
    shards = _one(gainrl_work / "home" / "datasets", "*/*/shards/*/manifest.json").parent
    spec = {"model": str(model_dir), "shards": str(shards), "reps": reps}
    out = work / "floor.json"
    run_child([sys.executable, str(Path(__file__).resolve()), "--floor-worker", json.dumps(spec), "--out", str(out)],
              work / "floor-log.txt", child_env())
    return json.loads(out.read_text())


def floor_worker(spec: dict[str, object]) -> dict[str, object]:
    """A bare forward over the non-shared tokens, batched as the scorer batches them."""
    import pyarrow.parquet as pq
    import torch

    from gainrl_ops.data.shards import ShardSet
    from gainrl_ops.scoring.capture import decoder_layers
    from gainrl_ops.scoring.models import ModelSpec, load_model
    from gainrl_ops.scoring.scorer import ScoreConfig, length_batches

    model = load_model(ModelSpec(str(spec["model"]), dtype="float32", device="cpu"))
    # The score needs the last layer's MLP input: what comes after it is replaced, not hooked.
    decoder_layers(model)[-1].mlp = torch.nn.Identity()
    model.model.norm = torch.nn.Identity()
    body = model.model
    batches, prefixes, suffix_tokens = [], [], 0
    for shard in ShardSet.open(Path(str(spec["shards"]))).shards:
        table = pq.read_table(shard.path, columns=["input_ids", "question_start"]).to_pydict()
        ids = table["input_ids"]
        prefix = min(table["question_start"])
        for other in ids[1:]:
            prefix = next((k for k in range(prefix) if other[k] != ids[0][k]), prefix)
        prefixes.append(prefix)
        suffixes = [row[prefix:] for row in ids]
        suffix_tokens += sum(len(s) for s in suffixes)
        for batch in length_batches([len(s) for s in suffixes], ScoreConfig()):
            width = max(len(suffixes[i]) for i in batch)
            input_ids = torch.zeros((len(batch), width), dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                input_ids[row, : len(suffixes[i])] = torch.as_tensor(suffixes[i])
                mask[row, : len(suffixes[i])] = 1
            positions = (prefix + torch.arange(width)).expand(len(batch), width)
            batches.append((input_ids, mask, positions))

    def one_pass(items) -> float:
        started = time.perf_counter()
        with torch.inference_mode():
            for input_ids, mask, positions in items:
                body(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=False)
        return time.perf_counter() - started

    one_pass(batches[:1])  # first-call allocations and kernel choice
    seconds = [one_pass(batches) for _ in range(int(spec["reps"]))]
    return {
        "seconds": seconds, "median_s": statistics.median(seconds), "shared_prefix_tokens": prefixes,
        "suffix_tokens": suffix_tokens, "batches": len(batches), "torch_threads": torch.get_num_threads(),
    }


STARTUP_FLOOR = """
import gc, sys
gc.disable()
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
AutoTokenizer.from_pretrained(sys.argv[1])
AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32).eval()
gc.freeze()
gc.enable()
"""


def run_startup_floor(model_dir: Path, reps: int, work: Path) -> dict[str, object]:
    """What any scorer built on transformers pays before its first forward and at exit: a fresh
    interpreter that imports torch and transformers, loads the tokenizer and the model, and
    exits, with the collector paused as `gainrl score` pauses it (core/collector.py). Added to the
    floor, it bounds the whole-process speedup any such scorer can reach over the published one."""
    seconds = [run_child([sys.executable, "-c", STARTUP_FLOOR, str(model_dir)], work / "startup-floor-log.txt", child_env())
               for _ in range(reps)]
    return {"seconds": seconds, "median_s": statistics.median(seconds)}


# --------------------------------------------------------------------------- orchestration


def median_of(runs: list[dict[str, object]], key: str) -> float:
    return statistics.median(float(r[key]) for r in runs)


def median_phases(runs: list[dict[str, object]]) -> dict[str, float]:
    """Each phase's median over `runs` (so the phases of a side need not add up to its median wall clock)."""
    return {name: statistics.median(float(r["phases"][name]) for r in runs) for name in runs[0]["phases"]}


def bench_shape(shape: Shape, corpus: list[str], root: Path, shot: Path, reps: int, seed: int) -> dict[str, object]:
    model_dir = root / f"model-{shape.name}"
    model = build_model(shape, corpus, model_dir)
    prompts = root / f"prompts-{shape.name}.json"
    prompt_info = write_prompts(model_dir, MathPromptConfig(shape.n_prompts, seed=seed), prompts)
    print(f"== {shape.name}: {model['parameters'] / 1e6:.1f}M parameters, vocabulary {model['model_vocab_size']} "
          f"(tokenizer {model['tokenizer_size']}); {prompt_info['n']} prompts of {prompt_info['tokens_min']}-"
          f"{prompt_info['tokens_max']} tokens (median {prompt_info['tokens_median']:.0f})", flush=True)
    # Page cache warm for both sides (libraries and weights), outside any timing.
    run_child([sys.executable, "-c", "import torch, transformers, datasets, polars, duckdb"], root / "warm.txt", child_env())
    for path in model_dir.iterdir():
        path.read_bytes()

    runs: dict[str, list[dict[str, object]]] = {"gainrl": [], "published": []}
    for rep in range(reps):
        # Alternated, and the first side alternates too, so drift in machine load hits both.
        for side in (("gainrl", "published") if rep % 2 == 0 else ("published", "gainrl")):
            work = root / shape.name / f"{side}-{rep}"
            run = run_gainrl(model_dir, prompts, shot, work, "float32") if side == "gainrl" else run_published(model_dir, prompts, work)
            runs[side].append(run)
            print(f"   {side:<9} run {rep + 1}/{reps}: {run['wall_s']:6.1f} s whole process, {run['scoring_s']:6.1f} s scoring, "
                  f"peak {run['peak_mib']:5.0f} MiB", flush=True)
    medians = {side: {key: median_of(r, key) for key in ("wall_s", "scoring_s", "peak_mib")} | {"phases": median_phases(r)}
               for side, r in runs.items()}
    tokens = runs["gainrl"][0]["tokens"]
    for side, m in medians.items():
        m["prompts_per_s"] = shape.n_prompts / m["scoring_s"]
        m["tokens_per_s"] = tokens / m["scoring_s"]
        m["whole_prompts_per_s"] = shape.n_prompts / m["wall_s"]

    reference_work = root / shape.name / "gainrl-0"
    floor = run_floor(model_dir, reference_work, reps, root / shape.name)
    startup_floor = run_startup_floor(model_dir, reps, root / shape.name)
    ceiling = medians["published"]["wall_s"] / (startup_floor["median_s"] + floor["median_s"])
    print(f"   floor: {floor['median_s']:.2f} s over {floor['suffix_tokens']} non-shared tokens "
          f"(shared prefix {floor['shared_prefix_tokens']} tokens); start-up floor {startup_floor['median_s']:.2f} s; "
          f"whole-process ceiling {ceiling:.2f}x", flush=True)

    auto = [run_gainrl(model_dir, prompts, shot, root / shape.name / "auto-0", "auto")]
    resolved = auto[0]["dtype"]
    auto_is_bf16 = resolved == ["bfloat16"]
    if auto_is_bf16:
        auto += [run_gainrl(model_dir, prompts, shot, root / shape.name / f"auto-{rep}", "auto") for rep in range(1, reps)]
    bf16 = run_gainrl(model_dir, prompts, shot, root / shape.name / "bf16", "bfloat16")
    agreement = bf16_agreement(read_scores(reference_work), read_scores(root / shape.name / "bf16"))
    bf16_native = hardware.native_bf16("cpu")
    print(f"   --dtype auto resolved to {', '.join(resolved)}; bf16 vs fp32 ranking Spearman {agreement['spearman']:.5f} "
          f"(bf16 {'native' if bf16_native else 'emulated'} on this CPU)", flush=True)

    same_tokens = runs["gainrl"][0]["tokens"] == runs["published"][0]["tokens"]
    return {
        "model": model,
        "prompts": prompt_info,
        "runs": runs,
        "medians": medians,
        "same_tokens_both_sides": same_tokens,
        "ratios": {
            "whole_process": medians["published"]["wall_s"] / medians["gainrl"]["wall_s"],
            "scoring_only": medians["published"]["scoring_s"] / medians["gainrl"]["scoring_s"],
            "peak_rss": medians["published"]["peak_mib"] / medians["gainrl"]["peak_mib"],
            "scoring_over_floor": medians["gainrl"]["scoring_s"] / floor["median_s"],
            "whole_process_ceiling": ceiling,
        },
        "floor": floor,
        "startup_floor": startup_floor,
        "dtype": {
            "auto_resolved_to": resolved,
            "auto_runs": auto,
            "auto_phases": median_phases(auto),
            "auto_whole_process_speedup": medians["published"]["wall_s"] / median_of(auto, "wall_s") if auto_is_bf16 else None,
            "bf16_native": bf16_native,
            "bf16_run": bf16,
            "bf16_vs_fp32": agreement,
        },
    }


def bench_startup(home: Path, reps: int, work: Path) -> dict[str, object]:
    """Start-up of the light commands against their floors, in fresh interpreters, alternated."""
    catalog = home / "gainrl.duckdb"
    bare_sql = f"import duckdb; print(duckdb.connect({str(catalog)!r}, read_only=True).sql({STARTUP_QUERY!r}).fetchall())"
    pairs = {
        "sql": ([sys.executable, "-c", bare_sql], [sys.executable, "-m", "gainrl_ops.cli", "sql", STARTUP_QUERY]),
        "definitions": ([sys.executable, "-c", "import dagster"], [sys.executable, "-c", "import pipelines.definitions"]),
    }
    env = child_env(home)
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {"query": STARTUP_QUERY}
    for name, (floor, ours) in pairs.items():
        for command in (floor, ours):  # page cache and compiled bytecode warm, outside the timing
            run_child(command, work / f"{name}-warm.txt", env)
        times: dict[str, list[float]] = {"floor": [], "gainrl": []}
        for rep in range(2 * reps + 1):
            for side in (("floor", "gainrl") if rep % 2 == 0 else ("gainrl", "floor")):
                command = floor if side == "floor" else ours
                times[side].append(run_child(command, work / f"{name}-{side}.txt", env))
        medians = {side: statistics.median(t) for side, t in times.items()}
        results[name] = {"runs": times, "median_s": medians, "ratio": medians["gainrl"] / medians["floor"]}
        print(f"   {name}: {medians['gainrl']:.2f} s against {medians['floor']:.2f} s "
              f"({results[name]['ratio']:.2f}x; {'bare duckdb query' if name == 'sql' else 'import dagster'})", flush=True)
    return results


def bench_memory(shape: Shape, sizes: tuple[int, ...], corpus: list[str], root: Path, shot: Path, seed: int) -> dict[str, object]:
    model_dir = root / "model-memory"
    model = build_model(shape, corpus, model_dir)
    everything = root / "prompts-memory.json"
    write_prompts(model_dir, MathPromptConfig(max(sizes), seed=seed), everything)
    records = json.loads(everything.read_text())
    rows = []
    for n in sizes:
        prompts = root / f"prompts-memory-{n}.json"
        prompts.write_text(json.dumps(records[:n]))
        run = run_gainrl(model_dir, prompts, shot, root / "memory" / str(n), "float32")
        rows.append({"n_prompts": n, **run})
        print(f"   memory, {n} prompts: scoring peak {_mib(run['scoring_peak_above_start_mib'])} above its start, "
              f"process peak {run['peak_mib']:.0f} MiB, {run['wall_s']:.1f} s", flush=True)
    peaks = [r["scoring_peak_above_start_mib"] for r in rows]
    growth = peaks[-1] - peaks[0] if None not in peaks else None
    return {"model": model, "rows": rows, "scoring_peak_growth_mib": growth}


def _mib(value: float | None) -> str:
    return "n/a (no /proc/self/clear_refs)" if value is None else f"{value:.1f} MiB"


def machine() -> dict[str, object]:
    import datasets
    import torch
    import transformers

    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    model_name = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), platform.processor())
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True).stdout.strip())
    return {
        "platform": platform.platform(), "cpu": model_name, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "bf16_cpu_flags": sorted(f for f in flags if f in ("avx512_bf16", "amx_bf16", "amx_tile", "avx512f", "avx2")),
        "cuda": torch.cuda.is_available(), "python": platform.python_version(), "torch": torch.__version__,
        "transformers": transformers.__version__, "datasets": datasets.__version__, "git_commit": commit, "git_dirty": dirty,
        "loadavg_at_start": os.getloadavg(),
    }


def print_phases(shapes: dict[str, dict]) -> None:
    """Median seconds per phase, both sides (and gainrl with --dtype auto), whole process."""
    columns = (*PHASES, "other")
    head = f"{'shape':<10} {'side':<22} " + " ".join(f"{c:>8}" for c in columns) + f" {'whole':>8}"
    print("\nper phase, median seconds\n" + head + "\n" + "-" * len(head))
    for name, s in shapes.items():
        auto = s["dtype"]["auto_runs"]
        sides = [("gainrl fp32", s["medians"]["gainrl"]["phases"], s["medians"]["gainrl"]["wall_s"]),
                 ("published", s["medians"]["published"]["phases"], s["medians"]["published"]["wall_s"]),
                 (f"gainrl auto ({auto[0]['dtype'][0]})", s["dtype"]["auto_phases"], median_of(auto, "wall_s"))]
        for side, phases, wall in sides:
            print(f"{name:<10} {side:<22} " + " ".join(f"{phases[c]:>8.2f}" for c in columns) + f" {wall:>8.2f}")
    print("(import: launch to the first step, interpreter and imports; load: dataset and model; score: the forwards and angles;"
          " write: publishing the scores (gainrl) or torch.save (published); refresh: the SQL catalog; other: the rest,"
          " printing and interpreter exit)")


def targets(shapes: dict[str, dict], memory: dict[str, object], startup: dict[str, object]) -> list[dict[str, object]]:
    rows = [
        {"target": "gainrl sql / a bare duckdb query of the same catalog file", "goal": f"<= {STARTUP_RATIO}x",
         "measured": startup["sql"]["ratio"], "met": startup["sql"]["ratio"] <= STARTUP_RATIO},
        {"target": "loading pipelines.definitions / import dagster", "goal": f"<= {STARTUP_RATIO}x",
         "measured": startup["definitions"]["ratio"], "met": startup["definitions"]["ratio"] <= STARTUP_RATIO},
    ]
    for name, s in shapes.items():
        r, d, shape = s["ratios"], s["dtype"], s["model"]
        if shape["whole_target"] is not None:
            rows.append({"target": f"{name}: whole process vs published, fp32", "goal": f">= {shape['whole_target']}x",
                         "measured": r["whole_process"], "met": r["whole_process"] >= shape["whole_target"],
                         "note": f"ceiling {r['whole_process_ceiling']:.2f}x = published / (start-up floor + scoring floor)"})
        auto = d["auto_whole_process_speedup"]
        if shape["auto_target"] is not None:
            rows.append({"target": f"{name}: whole process vs published, --dtype auto where bf16 is native", "goal": f">= {shape['auto_target']}x",
                         "measured": auto, "met": None if auto is None else auto >= shape["auto_target"],
                         "note": None if auto is not None else f"not applicable: auto resolved to {', '.join(d['auto_resolved_to'])} here"})
        rows.append({"target": f"{name}: scoring only / floor", "goal": f"<= {FLOOR_RATIO}",
                     "measured": r["scoring_over_floor"], "met": r["scoring_over_floor"] <= FLOOR_RATIO})
        rho = d["bf16_vs_fp32"]["spearman"]
        rows.append({"target": f"{name}: bf16 vs fp32 ranking agreement (Spearman), required before auto may pick bf16",
                     "goal": f">= {BF16_AGREEMENT}", "measured": rho, "met": bool(rho >= BF16_AGREEMENT),
                     "note": f"bf16 {'native' if d['bf16_native'] else 'emulated'} on this CPU"})
    growth = memory["scoring_peak_growth_mib"]
    sizes = [r["n_prompts"] for r in memory["rows"]]
    rows.append({"target": f"scoring peak memory flat from {sizes[0]} to {sizes[-1]} prompts", "goal": f"growth <= {FLAT_GROWTH_MIB} MiB",
                 "measured": growth, "met": None if growth is None else growth <= FLAT_GROWTH_MIB})
    return rows


def print_table(shapes: dict[str, dict], memory: dict[str, object], rows: list[dict[str, object]]) -> None:
    head = (f"{'shape':<10} {'prompts':>7} {'tokens':>7} | {'whole s':>7} {'pub s':>7} {'ratio':>6} {'ceil':>6} | {'score s':>7} {'pub s':>7} "
            f"{'ratio':>6} | {'p/s':>6} {'pub p/s':>7} {'tok/s':>7} | {'floor s':>7} {'/floor':>6} | {'MiB':>5} {'pub MiB':>7}")
    print("\n" + head + "\n" + "-" * len(head))
    for name, s in shapes.items():
        g, p, r = s["medians"]["gainrl"], s["medians"]["published"], s["ratios"]
        print(f"{name:<10} {s['prompts']['n']:>7} {s['prompts']['tokens_total']:>7} | {g['wall_s']:>7.1f} {p['wall_s']:>7.1f} "
              f"{r['whole_process']:>5.2f}x {r['whole_process_ceiling']:>5.2f}x | {g['scoring_s']:>7.2f} {p['scoring_s']:>7.2f} {r['scoring_only']:>5.2f}x | "
              f"{g['prompts_per_s']:>6.1f} {p['prompts_per_s']:>7.1f} {g['tokens_per_s']:>7.0f} | {s['floor']['median_s']:>7.2f} "
              f"{r['scoring_over_floor']:>6.2f} | {g['peak_mib']:>5.0f} {p['peak_mib']:>7.0f}")
    print("\n(whole: a fresh interpreter per run, imports included; score: from the loaded model to the scores; medians;"
          " ratio = published / gainrl; ceil = published / (start-up floor + floor), the most any scorer on transformers can reach;"
          " /floor = gainrl scoring / bare forward over the non-shared tokens)")
    print_phases(shapes)
    for name, s in shapes.items():
        d = s["dtype"]
        print(f"{name}: --dtype auto -> {', '.join(d['auto_resolved_to'])}; bf16 vs fp32 Spearman {d['bf16_vs_fp32']['spearman']:.5f} "
              f"(bf16 run {d['bf16_run']['scoring_s']:.1f} s scoring)")
    print("memory: " + ", ".join(f"{r['n_prompts']}: {_mib(r['scoring_peak_above_start_mib'])}" for r in memory["rows"])
          + " (scoring peak above the RSS when scoring starts)")
    print("\ntargets:")
    for row in rows:
        met = {True: "met", False: "NOT met", None: "n/a"}[row["met"]]
        value = "-" if row["measured"] is None else f"{row['measured']:.4g}"
        print(f"  {met:<8} {row['target']}: {value} (goal {row['goal']})" + (f"; {row['note']}" if row.get("note") else ""))
    load = max(max(r["loadavg_before"], r["loadavg_after"]) for s in shapes.values() for side in s["runs"].values() for r in side)
    if load > (os.cpu_count() or 1) + 0.5:
        print(f"\nthe 1-minute load average reached {load:.1f} on {os.cpu_count()} cores: other jobs were running, timings are noisy")


def main_run(args: argparse.Namespace) -> int:
    import published_data_processor as published

    started = time.perf_counter()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the temporary folder is removed
    shapes, memory_shape, memory_sizes = quick_shapes() if args.quick else (SHAPES, MEMORY_SHAPE, MEMORY_SIZES)
    if args.prompts:
        shapes = tuple(replace(s, n_prompts=n) for s, n in zip(shapes, args.prompts))
    check_cli()
    info = machine()
    with tempfile.TemporaryDirectory(prefix="bench_scorer.") as tmp:
        root = Path(tmp)
        shot = root / "few_shot.json"
        shot.write_text(json.dumps([{"question": published.FEW_SHOT_QUESTION, "answer": published.FEW_SHOT_ANSWER}]))
        corpus = tokenizer_corpus(300 if args.quick else 2000, seed=args.seed + 1)
        results = {name: bench_shape(s, corpus, root, shot, args.reps, args.seed) for name, s in ((s.name, s) for s in shapes)}
        print(f"== memory: {memory_shape.hidden_size}-wide, {memory_shape.num_layers}-layer model", flush=True)
        memory = bench_memory(memory_shape, memory_sizes, corpus, root, shot, args.seed)
        print("== start-up of the light commands", flush=True)
        startup = bench_startup(root / shapes[0].name / "gainrl-0" / "home", args.reps, root / "startup")
        for name in list(results):
            shutil.rmtree(root / name, ignore_errors=True)
    rows = targets(results, memory, startup)
    report = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k not in ("floor_worker",)},
        "machine": info,
        "competitor": {"script": "benchmarks/published_data_processor.py", "differences": published_differences()},
        "gainrl_command": "gainrl score --data PROMPTS --model MODEL --name bench --system-prompt R1 --few-shot SHOT "
                          f"--dtype float32|auto|bfloat16 --max-tokens {MAX_TOKENS} (fresh GAINRL_HOME per run)",
        "scoring_only": {"gainrl": SCORING_CALL + " (score shards, write parts, compact, publish)",
                         "published": "the per-prompt forwards (their tokenization taken out) and the angle step"},
        "shapes": results,
        "memory": memory,
        "startup": startup,
        "targets": rows,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    print_table(results, memory, rows)
    print(f"\ntotal runtime {report['total_seconds']:.0f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=float) + "\n")
    print(f"results written to {args.out}")
    if not all(s["same_tokens_both_sides"] for s in results.values()):
        print("ERROR: gainrl and the published script scored different numbers of tokens: the prompts differ", file=sys.stderr)
        return 1
    return 0


def published_differences() -> list[str]:
    """The bullet list under 'Differences from the published file' in the competitor's docstring."""
    import published_data_processor as published

    text = published.__doc__.split("Differences from the published file", 1)[1].split("\n\n", 2)[1]
    return [" ".join(item.split()) for item in text.strip().removeprefix("- ").split("\n- ")]


def check_cli() -> None:
    """The flags this benchmark passes must exist (issue 9 items 2-3); say so in one line if not."""
    done = subprocess.run([sys.executable, "-m", "gainrl_ops.cli", "score", "--help"], capture_output=True, text=True, cwd=ROOT, env=child_env())
    missing = [flag for flag in ("--few-shot", "--system-prompt", "--max-tokens", "--dtype") if flag not in done.stdout]
    if done.returncode != 0 or missing or "auto" not in done.stdout:
        raise SystemExit(f"bench_scorer: `gainrl score` lacks {', '.join(missing) or '--dtype auto'}; this benchmark needs it")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny models, 12 prompts, one repetition (about 3 minutes on 2 idle cores)")
    parser.add_argument("--reps", type=int, help="runs per side, and floor passes (default 3; 1 with --quick)")
    parser.add_argument("--prompts", type=int, nargs=2, metavar=("N_4M", "N_32M"), help="prompts per shape (default 400 160)")
    parser.add_argument("--seed", type=int, default=2024, help="seed of the benchmark prompts (the tokenizer corpus uses seed + 1)")
    parser.add_argument("--out", type=Path, help="JSON results (default benchmarks/results/bench_scorer.json; with --quick a temporary file)")
    parser.add_argument("--floor-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.reps = args.reps or (1 if args.quick else 3)
    args.out = args.out or (Path(tempfile.gettempdir()) / "bench_scorer_quick.json" if args.quick else RESULTS)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.floor_worker:
        args.out.write_text(json.dumps(floor_worker(json.loads(args.floor_worker))))
        return 0
    return main_run(args)


if __name__ == "__main__":
    sys.exit(main())
