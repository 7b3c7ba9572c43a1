"""Benchmark: gainrl's angle scorer against a faithful re-implementation of the published approach.

Both methods score the same tokenized prompts with the same model:

- gainrl: `score_shards` over pre-built Parquet shards (prompts batched by length, the
  forward pass stopped at the last layer's MLP input, the O(L*d) sum identity, one shard
  in memory at a time, one Parquet part written per shard);
- reference: the published approach with its indexing bug fixed: one prompt per forward
  pass, the full forward including the LM head, the last layer's MLP input captured by a
  forward hook and every activation kept in a list until the end, then an explicit L x L
  cosine matrix per prompt and the means of its intra (Q x Q, distinct pairs) and inter
  (Q x S) blocks.

Every (method, model, size) runs in a fresh subprocess so that its peak memory is its own.

    python benchmarks/bench_scorer.py [--sizes 1000 8000] [--wide-sizes 1000 4000] [--model PATH] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Qwen2Config,
    Qwen2ForCausalLM,
)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

from gainrl_ops.core.layout import Layout  # noqa: E402
from gainrl_ops.data.arithmetic import ArithmeticConfig, generate  # noqa: E402
from gainrl_ops.data.prompts import PromptConfig  # noqa: E402
from gainrl_ops.data.shards import ShardSet, tokenize_to_shards  # noqa: E402
from gainrl_ops.scoring.angles import DEFAULT_INTER_WEIGHT  # noqa: E402
from gainrl_ops.scoring.embedded import EmbeddedModelConfig, embedded_model_path  # noqa: E402
from gainrl_ops.scoring.models import ModelSpec, load_model, load_tokenizer  # noqa: E402
from gainrl_ops.scoring.scorer import (  # noqa: E402
    ScoreConfig,
    ScoreContext,
    score_batch,
    score_shards,
)

RESULTS = HERE / "results" / "bench_scorer.json"
AGREEMENT_TOL = 1e-4  # float32: batching and padding change the sums only in the last bits
PROMPT_SEED = 2024


@dataclass(frozen=True)
class WideModelConfig:
    """A wider random Qwen2 with a 32k vocabulary: makes the LM head cost realistic."""

    vocab_size: int = 32000
    hidden_size: int = 512
    intermediate_size: int = 1408
    num_layers: int = 4
    num_heads: int = 8
    num_kv_heads: int = 2
    seed: int = 0


@dataclass(frozen=True)
class WorkerSpec:
    """What one subprocess measures; passed as JSON on its command line."""

    method: str  # "gainrl" or "reference"
    model_path: str
    shard_dir: str
    work_dir: str  # where the worker writes its scores (and gainrl its parts)
    inter_weight: float


@dataclass
class Measurement:
    """What one subprocess reports."""

    method: str
    model: str
    n_prompts: int
    seconds: float
    prompts_per_s: float
    peak_rss_delta_mib: float  # peak RSS during scoring minus RSS right before it
    baseline_rss_mib: float
    hwm_reset: bool  # True: the peak was reset before scoring, so it is exactly this run's
    loadavg_before: float
    loadavg_after: float


@dataclass
class Comparison:
    model: str
    n_prompts: int
    speedup: float  # gainrl prompts/s over reference prompts/s
    max_abs_diff: float  # of angle_score between the two methods
    agree: bool


@dataclass
class Report:
    meta: dict[str, object]
    measurements: list[Measurement] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    memory_growth_mib: dict[str, dict[str, float]] = field(default_factory=dict)


# --------------------------------------------------------------------------- memory


def _status_kib(key: str) -> int:
    match = re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    return int(match.group(1)) if match else 0


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so the later peak is this phase's only."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _status_kib("VmHWM") <= _status_kib("VmRSS") + 1024


def peak_rss_kib() -> int:
    """Peak RSS since the last reset; ru_maxrss as a fallback where /proc is missing."""
    return _status_kib("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# --------------------------------------------------------------------------- reference


def reference_angle(hidden: torch.Tensor, system: tuple[int, int], question: tuple[int, int], w: float) -> float:
    """The published per-prompt computation, with correct spans: explicit L x L cosine matrix."""
    unit = torch.nn.functional.normalize(hidden.float(), dim=-1)
    cos = unit @ unit.T  # [L, L]: the O(L^2 * d) step the sum identity avoids
    q, s = slice(*question), slice(*system)
    qq = cos[q, q]
    n_q = qq.shape[0]
    off_diagonal = ~torch.eye(n_q, dtype=torch.bool)
    intra = qq[off_diagonal].mean().item() if n_q >= 2 else float("nan")
    inter = cos[q, s].mean().item() if system[1] > system[0] else 0.0
    return intra + w * inter


def _read_shard_rows(shard_dir: Path) -> dict[str, list]:
    """All prompts of a shard set as Python lists (the published code holds the dataset in memory)."""
    columns: dict[str, list] = {}
    for shard in ShardSet.open(shard_dir).shards:
        for name, values in pq.read_table(shard.path).to_pydict().items():
            columns.setdefault(name, []).extend(values)
    return columns


def run_reference(model: PreTrainedModel, spec: WorkerSpec) -> tuple[list[str], np.ndarray, dict]:
    rows = _read_shard_rows(Path(spec.shard_dir))
    with torch.no_grad():  # warm-up outside the timing: first-call allocations and kernel choice
        model(torch.tensor([rows["input_ids"][0]]))
    timing = _start_timing()
    captured: list[torch.Tensor] = []
    # The published code hooks the last layer's MLP by name; this layout is Qwen2/Llama's.
    mlp = model.model.layers[-1].mlp
    handle = mlp.register_forward_hook(lambda _m, args, _out: captured.append(args[0].detach()))
    try:
        with torch.no_grad():
            for ids in tqdm(rows["input_ids"], desc="reference forward", unit="prompt"):
                model(torch.tensor([ids])).logits  # full forward, LM head included
    finally:
        handle.remove()
    scores = [
        reference_angle(h[0], (s0, s1), (q0, q1), spec.inter_weight)
        for h, s0, s1, q0, q1 in tqdm(
            zip(captured, rows["system_start"], rows["system_end"], rows["question_start"], rows["question_end"]),
            total=len(captured), desc="reference angles", unit="prompt",
        )
    ]
    return rows["id"], np.asarray(scores), _stop_timing(timing)


# --------------------------------------------------------------------------- gainrl


def bench_context(shards: ShardSet) -> ScoreContext:
    """Labels for the score rows; built from the fields so the benchmark survives new ones."""
    known = {"prompt_fingerprint": shards.prompt_fingerprint, "dtype": "float32"}
    return ScoreContext(**{f.name: known.get(f.name, "bench") for f in fields(ScoreContext)})


def run_gainrl(model: PreTrainedModel, spec: WorkerSpec) -> tuple[list[str], np.ndarray, dict]:
    shards = ShardSet.open(Path(spec.shard_dir))
    first = pq.read_table(shards.shards[0].path).slice(0, 2).to_pydict()
    score_batch(  # warm-up outside the timing, as for the reference
        model, first["input_ids"],
        list(zip(first["system_start"], first["system_end"])),
        list(zip(first["question_start"], first["question_end"])),
        spec.inter_weight,
    )
    context = bench_context(shards)
    out_dir = Path(spec.work_dir) / "parts"
    timing = _start_timing()
    score_shards(model, shards, out_dir, context, ScoreConfig(inter_weight=spec.inter_weight))
    result = _stop_timing(timing)
    table = pa.concat_tables([pq.read_table(p, columns=["id", "angle_score"]) for p in sorted(out_dir.glob("part-*.parquet"))])
    return table.column("id").to_pylist(), table.column("angle_score").to_numpy(), result


# --------------------------------------------------------------------------- worker


def _start_timing() -> dict:
    gc.collect()
    reset = reset_peak_rss()
    return {"rss0": _status_kib("VmRSS"), "reset": reset, "load0": os.getloadavg()[0], "t0": time.perf_counter()}


def _stop_timing(timing: dict) -> dict:
    seconds = time.perf_counter() - timing["t0"]
    return {
        "seconds": seconds,
        "peak_rss_delta_mib": (peak_rss_kib() - timing["rss0"]) / 1024,
        "baseline_rss_mib": timing["rss0"] / 1024,
        "hwm_reset": timing["reset"],
        "loadavg_before": timing["load0"],
        "loadavg_after": os.getloadavg()[0],
    }


def worker(spec: WorkerSpec) -> None:
    """Load the model, score once, write `measurement.json` and `scores.npz` into work_dir."""
    model = load_model(ModelSpec(spec.model_path, device="cpu"))
    run = run_gainrl if spec.method == "gainrl" else run_reference
    ids, scores, timing = run(model, spec)
    work = Path(spec.work_dir)
    np.savez(work / "scores.npz", ids=np.asarray(ids), scores=scores)
    (work / "measurement.json").write_text(json.dumps({"n_prompts": len(ids), **timing}))


# --------------------------------------------------------------------------- orchestration


def quick_config() -> EmbeddedModelConfig:
    return EmbeddedModelConfig(sft_steps=20, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=2, num_kv_heads=1, eval_problems=16)


def embedded_path(args: argparse.Namespace) -> Path:
    if args.model:
        return Path(args.model)
    if not args.quick:
        print("building/loading the default embedded model (first build takes several minutes) ...", flush=True)
    return embedded_model_path(quick_config() if args.quick else EmbeddedModelConfig())


def build_wide_model(config: WideModelConfig, target: Path) -> Path:
    """Random init, saved and reloaded through from_pretrained like any checkpoint."""
    torch.manual_seed(config.seed)
    model = Qwen2ForCausalLM(Qwen2Config(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads,
        max_position_embeddings=1024,
    ))
    model.save_pretrained(target)
    return target


def build_shards(tokenizer: PreTrainedTokenizerBase, sizes: list[int], root: Path) -> dict[int, Path]:
    """The first N generated problems of one fixed list, tokenized once per size (not timed)."""
    problems = generate(ArithmeticConfig(n_problems=max(sizes), seed=PROMPT_SEED))
    table = pa.table({"id": [f"p{i:06d}" for i in range(len(problems))], "problem": [p.problem for p in problems]})
    return {n: tokenize_to_shards(table.slice(0, n), tokenizer, PromptConfig(), Layout(root), f"n{n}", "0" * 16).directory for n in sizes}


def model_summary(path: Path, temporary: bool) -> dict[str, object]:
    # A temporary folder's path means nothing after the run.
    where = "temporary (random init)" if temporary else str(path)
    config = json.loads((path / "config.json").read_text())
    keys = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "tie_word_embeddings")
    return {"path": where, **{k: config.get(k) for k in keys}}


def measure(method: str, model: str, model_path: Path, shard_dir: Path, work_root: Path, w: float) -> tuple[Measurement, np.ndarray, np.ndarray]:
    work = work_root / f"{model}-{shard_dir.parent.name}-{method}"
    work.mkdir(parents=True)
    spec = WorkerSpec(method, str(model_path), str(shard_dir), str(work), w)
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(asdict(spec))], check=True)
    raw = json.loads((work / "measurement.json").read_text())
    scores = np.load(work / "scores.npz")
    result = Measurement(method=method, model=model, prompts_per_s=raw["n_prompts"] / raw["seconds"], **raw)
    return result, scores["ids"], scores["scores"]


def compare(model: str, n: int, gain: tuple, ref: tuple) -> Comparison:
    (mg, ids_g, s_g), (mr, ids_r, s_r) = gain, ref
    order_g, order_r = np.argsort(ids_g), np.argsort(ids_r)
    assert (ids_g[order_g] == ids_r[order_r]).all(), "the two methods scored different prompts"
    a, b = s_g[order_g], s_r[order_r]
    both_nan = np.isnan(a) & np.isnan(b)
    diff = float(np.nanmax(np.where(both_nan, 0.0, np.abs(a - b)))) if len(a) else 0.0
    return Comparison(model, n, mg.prompts_per_s / mr.prompts_per_s, diff, diff < AGREEMENT_TOL)


def memory_growth(report: Report, sizes: dict[str, list[int]]) -> dict[str, dict[str, float]]:
    """Peak-memory increase from the smallest to the largest size, per model and method."""
    peak = {(m.model, m.method, m.n_prompts): m.peak_rss_delta_mib for m in report.measurements}
    return {
        model: {method: peak[model, method, max(ns)] - peak[model, method, min(ns)] for method in ("gainrl", "reference")}
        for model, ns in sizes.items()
    }


def print_table(report: Report, sizes: dict[str, list[int]]) -> None:
    by_key = {(m.model, m.n_prompts, m.method): m for m in report.measurements}
    head = f"{'model':<9} {'prompts':>7} | {'gainrl p/s':>10} {'ref p/s':>8} {'speedup':>7} | {'gainrl MiB':>10} {'ref MiB':>8} | {'max|d score|':>12} {'agree':>5}"
    print("\n" + head + "\n" + "-" * len(head))
    for c in report.comparisons:
        g, r = by_key[c.model, c.n_prompts, "gainrl"], by_key[c.model, c.n_prompts, "reference"]
        print(f"{c.model:<9} {c.n_prompts:>7} | {g.prompts_per_s:>10.1f} {r.prompts_per_s:>8.1f} {c.speedup:>6.1f}x | "
              f"{g.peak_rss_delta_mib:>10.1f} {r.peak_rss_delta_mib:>8.1f} | {c.max_abs_diff:>12.2e} {'yes' if c.agree else 'NO':>5}")
    load = max(max(m.loadavg_before, m.loadavg_after) for m in report.measurements)
    print(f"\nhighest 1-min load average during a measurement: {load:.1f} on {os.cpu_count()} cores"
          + ("  (other jobs were running: timings are noisy)" if load > (os.cpu_count() or 1) + 0.5 else ""))
    print("\npeak-memory growth from the smallest to the largest size (MiB):")
    for model, growth in report.memory_growth_mib.items():
        span = f"{min(sizes[model])} -> {max(sizes[model])}"
        print(f"  {model:<9} {span:>13}   gainrl {growth['gainrl']:+8.1f}   reference {growth['reference']:+8.1f}")


def main_run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    # SIGTERM as an exception, so that the temporary folder (models, shards, parts) is removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sizes = {"embedded": sorted(set(args.sizes))} if "embedded" in args.models else {}
    if "wide" in args.models:
        # The reference needs ~45 ms a prompt on the wide model on 2 idle cores (far more on busy
        # ones): 8000 prompts there are most of the run's ~10 minutes; --wide-sizes shortens it.
        sizes["wide"] = sorted(set(args.wide_sizes or args.sizes))
    embedded = embedded_path(args)
    with tempfile.TemporaryDirectory(prefix="bench_scorer.") as tmp:
        root = Path(tmp)
        models = {"embedded": embedded} if "embedded" in args.models else {}
        if "wide" in args.models:
            models["wide"] = build_wide_model(WideModelConfig(), root / "wide")
        all_sizes = sorted({n for ns in sizes.values() for n in ns})
        shard_dirs = build_shards(load_tokenizer(str(embedded)), all_sizes, root / "shards")
        report = Report(meta={
            "sizes": sizes,
            "inter_weight": DEFAULT_INTER_WEIGHT,
            "models": {name: model_summary(path, name == "wide") for name, path in models.items()},
            "wide_model": asdict(WideModelConfig()),
            "embedded_quick": bool(args.quick and not args.model),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "machine": platform.machine(),
            "agreement_tolerance": AGREEMENT_TOL,
        })
        for name, path in models.items():
            for n in sizes[name]:
                runs = {}
                for method in ("gainrl", "reference"):
                    print(f"== {name} model, {n} prompts, {method}", flush=True)
                    runs[method] = measure(method, name, path, shard_dirs[n], root / "runs", DEFAULT_INTER_WEIGHT)
                    report.measurements.append(runs[method][0])
                    print(f"   {runs[method][0].prompts_per_s:.1f} prompts/s, peak +{runs[method][0].peak_rss_delta_mib:.0f} MiB", flush=True)
                report.comparisons.append(compare(name, n, runs["gainrl"], runs["reference"]))
        report.memory_growth_mib = memory_growth(report, sizes)
    report.meta["total_seconds"] = round(time.perf_counter() - started, 1)
    print_table(report, sizes)
    print(f"\ntotal runtime {report.meta['total_seconds']:.0f} s (model build, tokenization and subprocess start-up included)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(asdict(report), indent=2) + "\n")
    print(f"results written to {args.out}")
    if not all(c.agree for c in report.comparisons):
        print(f"ERROR: the methods disagree by more than {AGREEMENT_TOL}", file=sys.stderr)
        return 1
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 8000], help="dataset sizes (prompts); at least two for memory growth")
    parser.add_argument("--model", help="an existing model folder to use as the 'embedded' model")
    parser.add_argument("--quick", action="store_true", help="use a tiny embedded model that builds in seconds")
    parser.add_argument("--wide-sizes", type=int, nargs="+", help="sizes for the wide model (default: --sizes)")
    parser.add_argument("--models", nargs="+", choices=["embedded", "wide"], default=["embedded", "wide"], help="which models to benchmark")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the JSON results")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker(WorkerSpec(**json.loads(args.worker)))
        return 0
    return main_run(args)


if __name__ == "__main__":
    sys.exit(main())
