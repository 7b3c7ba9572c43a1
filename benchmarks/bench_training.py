"""GRPO curricula side by side on an embedded task: GAIN-RL's angle against uniform sampling,
a shortest-question-first control and the reward-based samplers users would otherwise pick.

Every arm trains from the same base checkpoint on the same prompts with the same budget
(epochs x prompts per epoch x generations), over several seeds, and is evaluated after every
epoch by greedy decoding of held-out problems. The arms:
- `gainrl`: the Gaussian window over the base checkpoint's angle ranking (scored here with the
  library scorer), moved by the rollout feedback angle;
- `uniform`: uniform draws, the baseline every difference is taken against;
- `length`: the same window and controller over the order by question tokens (a query);
- `learnability`: LILO, prompts drawn in proportion to p(1 - p), starting from the base
  checkpoint's pass rates (k sampled completions per prompt) and updated from the rollouts;
- `pool`: prime-rl's difficulty pools (its defaults), learned from the rollouts alone;
- `gainrl-half`: GAIN-RL on a seeded half of the prompts (the paper's data-efficiency claim).

Primary metric: the area under the held-out curve (mean accuracy over epochs 0..E,
trapezoids), and each arm's difference to uniform paired by seed, with a 95% percentile
bootstrap over seeds. Secondary: epochs and wall seconds to the target (training with feedback
plus the arm's signal; held-out evaluation excluded). A run that never reaches the target counts
as E + 1 epochs and its seconds times (E + 1) / E, so an arm that never gets there cannot look
faster. Cost: CPU seconds of training plus the arm's signal (evaluation excluded), and final
accuracy gained over the base per CPU-hour.

The benchmark has its own model and task (`BENCH_MODEL`, built through the same embedded
code path as the default and cached by its configuration), so that the default model can
change without moving these numbers, and so that uniform GRPO itself gains clearly within
the budget: a benchmark in which nothing learns cannot rank curricula. That build is
reproducible (float64 warm-up on one thread, weights kept on a 16-bit grid), so every x86
machine should train from the same weights; the JSON records their fingerprint (`model_fingerprint`),
and partial results combine only when it matches.

    .venv/bin/python benchmarks/bench_training.py                                  # the full benchmark
    .venv/bin/python benchmarks/bench_training.py --seeds 0 --epochs 2 --held-out 200 --n-prompts 200  # smoke test
    # one process per core, then one report:
    .venv/bin/python benchmarks/bench_training.py --seeds 0 1 2 3 4 --out a.json & .venv/bin/python benchmarks/bench_training.py --seeds 5 6 7 8 9 --out b.json; wait
    .venv/bin/python benchmarks/bench_training.py --combine a.json b.json
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Self

import numpy as np
import polars as pl
import torch
from gainrl_ops.difficulty.config import PassRateConfig
from gainrl_ops.difficulty.pass_rates import rate_checkpoint
from gainrl_ops.difficulty.store import with_pass_rates
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from gainrl_ops.core.layout import Layout
from gainrl_ops.core.plotting import save_png
from gainrl_ops.core.stats import bootstrap_ci
from gainrl_ops.curriculum.catalog import refresh_catalog
from gainrl_ops.curriculum.ranking import export_ranking, ordered_prompts
from gainrl_ops.data.arithmetic import ArithmeticConfig
from gainrl_ops.data.prompts import PromptConfig
from gainrl_ops.data.shards import tokenize_to_shards
from gainrl_ops.data.sources import DatasetSource, held_out_problems, prepare_dataset
from gainrl_ops.scoring.checkpoints import checkpoint_fingerprint, unregistered
from gainrl_ops.scoring.models import ModelSpec, load_model, load_tokenizer
from gainrl_ops.scoring.scorer import score_and_publish
from gainrl_ops.scoring.target import CheckpointTarget
from gainrl_ops.training.config import TrainingRunConfig
from gainrl_ops.training.embedded import EmbeddedModelConfig, embedded_model_path
from gainrl_ops.training.evaluation import greedy_accuracy
from gainrl_ops.training.trainer import train_run

RESULTS = Path(__file__).resolve().parent / "results"
SAMPLERS = ("gainrl", "uniform", "length", "learnability", "pool")
# GAIN-RL on a seeded half of the prompts, against uniform on all of them: the paper's claim.
HALF = "gainrl-half"
ARMS = (*SAMPLERS, HALF)
# The signal each arm pays for before training (the pool sampler learns from rollouts alone).
SIGNAL = {"gainrl": "angle", HALF: "angle", "length": "length", "learnability": "pass_rate"}
# The task: word problems of 1-2 operations on single digits. The model: a small Qwen2 warmed
# up on their worked solutions.
TASK = ArithmeticConfig(n_problems=20000, seed=4321, max_steps=2, max_digits=1)
# GRPO's task is the same arithmetic under a new instruction: the warm-up taught the answer
# format under the model's own system prompt (about 0.74 held-out accuracy), and under this one
# the model starts near 0.30, so uniform GRPO has something to learn within a few epochs.
TASK_SYSTEM_PROMPT = "Think step by step and give the final answer after ####."
BENCH_MODEL = EmbeddedModelConfig(
    data=TASK,
    vocab_size=512,
    hidden_size=96,
    intermediate_size=256,
    num_layers=3,
    num_heads=4,
    num_kv_heads=2,
    sft_steps=800,
    batch_size=32,
    learning_rate=3e-3,
    eval_problems=256,
    seed=0,
)


def prepare(model_path: str, source: DatasetSource, layout: Layout, prompt: PromptConfig, pass_rates: PassRateConfig) -> dict[str, object]:
    """The training prompts in each order the samplers read, and what each signal cost in
    wall and CPU seconds: the angle needs a prefill of every prompt (scoring), the length
    order a query, the pass rates k sampled completions of every prompt."""
    loaded, label = prepare_dataset(source, layout)
    tokenizer = load_tokenizer(model_path)
    tokenize_to_shards(loaded.table, tokenizer, prompt, layout, source.name, label.version)
    answers = pl.from_arrow(loaded.table).select("id", "answer")
    target = CheckpointTarget(layout, source, label.version, unregistered(model_path, name="bench"), prompt, requested_dtype="float32")
    with Stopwatch() as angle_cost:
        score_and_publish(target.load_model(), target.plan())
        refresh_catalog(layout.root)
        ranking = pl.read_parquet(export_ranking(layout, target.key))
        angle = ranking.select("id", "rank", "problem", "difficulty").join(answers, on="id", how="left", maintain_order="left")
    with Stopwatch() as length_cost:
        length = ordered_prompts(layout, source.name, label.version, target.key.prompt_fingerprint, "length")
    with Stopwatch() as pass_rate_cost:
        rate_checkpoint(target, pass_rates)
        angle = with_pass_rates(angle, layout, source.name, target.key.checkpoint, label.version)
    cost = {"angle": angle_cost.seconds, "length": length_cost.seconds, "pass_rate": pass_rate_cost.seconds}
    return {
        "angle": angle, "length": length,
        "signal_seconds": {k: wall for k, (wall, _) in cost.items()}, "signal_cpu_seconds": {k: cpu for k, (_, cpu) in cost.items()},
        "mean_pass_rate": float(angle["pass_rate"].mean()),
    }


class Stopwatch:
    """Wall and CPU (this process) seconds of a block, as `seconds` = (wall, cpu)."""

    def __enter__(self) -> Self:
        self._start = (time.perf_counter(), time.process_time())
        return self

    def __exit__(self, *_: object) -> None:
        self.seconds = (time.perf_counter() - self._start[0], time.process_time() - self._start[1])


def half_of(ranked: pl.DataFrame, seed: int) -> pl.DataFrame:
    """A seeded half of the prompts, in their ranked order: the paper's data-efficiency arm."""
    rows = np.sort(np.random.default_rng(seed).choice(ranked.height, size=ranked.height // 2, replace=False))
    return ranked[rows]


def area(curve: list[float], base: float) -> float:
    """Mean held-out accuracy over epochs 0..E (epoch 0 = base), by trapezoids."""
    points = [base, *curve]
    return sum((a + b) / 2 for a, b in zip(points, points[1:])) / len(curve)


def to_target(curve: list[float], seconds: list[float], target: float, overhead: float) -> tuple[float, float, bool]:
    """(epochs, wall seconds) to the first epoch at or above `target`, and whether it was reached;
    censored at E + 1 epochs and total seconds * (E + 1) / E."""
    for epoch, (accuracy, elapsed) in enumerate(zip(curve, seconds)):
        if accuracy >= target:
            return epoch + 1, elapsed + overhead, True
    epochs = len(curve)
    return epochs + 1, (seconds[-1] + overhead) * (epochs + 1) / epochs, False


def interval(values: list[float], n_boot: int) -> dict[str, float]:
    mean, low, high = bootstrap_ci(np.mean, np.asarray(values, dtype=float), n_boot=n_boot)
    return {"mean": mean, "low": low, "high": high}


def paired_difference(values: list[float], baseline: list[float], n_boot: int) -> dict[str, float]:
    """mean(values - baseline) over seeds, with a percentile-bootstrap interval that resamples
    seeds (each seed ran both arms from the same base, so the pairs share their luck)."""
    diff = np.asarray(values, float) - np.asarray(baseline, float)
    estimate, low, high = bootstrap_ci(np.mean, diff, n_boot=n_boot)
    return {"difference": estimate, "low": low, "high": high}


def summarise(rows: list[dict], arms: list[str], n_boot: int) -> dict[str, object]:
    """Per arm: intervals of each metric over seeds, runs that reached the target, CPU cost and
    accuracy gained per CPU-hour; then each arm's paired difference to uniform."""
    metrics = ("area", "final", "epochs_to_target", "seconds_to_target", "cpu_seconds", "gain_per_cpu_hour")
    per = {a: {m: [r[m] for r in sorted(rows, key=lambda r: r["seed"]) if r["arm"] == a] for m in metrics} for a in arms}
    summary: dict[str, object] = {
        a: {**{m: interval(per[a][m], n_boot) for m in metrics},
            "reached": sum(r["reached"] for r in rows if r["arm"] == a), "seeds": len(per[a]["final"])}
        for a in arms
    }
    if "uniform" in arms:
        seeds = {a: [r["seed"] for r in sorted(rows, key=lambda r: r["seed"]) if r["arm"] == a] for a in arms}
        summary["vs_uniform"] = {
            a: {m: paired_difference(per[a][m], per["uniform"][m], n_boot) for m in ("area", "final", "epochs_to_target", "seconds_to_target")}
            for a in arms if a != "uniform" and seeds[a] == seeds["uniform"]
        }
    return summary


def plot(rows: list[dict], arms: list[str], base: float, target: float, path: Path) -> Path:
    fig = Figure(figsize=(8, 5), dpi=100, layout="constrained")
    ax = fig.subplots()
    for arm in arms:
        curves = np.asarray([[base, *r["curve"]] for r in rows if r["arm"] == arm])
        epochs = np.arange(curves.shape[1])
        line, = ax.plot(epochs, curves.mean(axis=0), marker="o", label=f"{arm} (mean of {len(curves)} seeds)")
        ax.fill_between(epochs, np.quantile(curves, 0.25, axis=0), np.quantile(curves, 0.75, axis=0), color=line.get_color(), alpha=0.12)
    ax.axhline(target, color="grey", linestyle="--", label=f"target {target:.3f}")
    ax.set(xlabel="epoch", ylabel="held-out greedy accuracy", title="GRPO curricula from one base checkpoint (band: inter-quartile range over seeds)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize="small")
    return save_png(fig, path)


def _fmt(stat: dict[str, float], digits: int = 2, key: str = "mean") -> str:
    return f"{stat[key]:+.{digits}f} [{stat['low']:+.{digits}f}, {stat['high']:+.{digits}f}]" if key == "difference" \
        else f"{stat[key]:.{digits}f} [{stat['low']:.{digits}f}, {stat['high']:.{digits}f}]"


def report(results: dict, arms: list[str], n_boot: int, out: Path) -> None:
    """Summary, table, plot and JSON of a finished benchmark (`results` holds `runs`)."""
    rows, base, target = results["runs"], results["base_accuracy"], results["target"]
    summary = summarise(rows, arms, n_boot)
    paired = summary.get("vs_uniform", {})
    print(f"\n{'arm':13} {'area under curve':21} {'area - uniform (paired)':25} {'final accuracy':21} {'epochs to target':18} "
          f"{'reached':8} {'CPU s':>7} {'gain/CPU-h':>10}")
    for arm in arms:
        m = summary[arm]
        difference = _fmt(paired[arm]["area"], 3, "difference") if arm in paired else "-"
        print(f"{arm:13} {_fmt(m['area'], 3):21} {difference:25} {_fmt(m['final'], 3):21} {_fmt(m['epochs_to_target'], 1):18} "
              f"{m['reached']:>2}/{m['seeds']:<5} {m['cpu_seconds']['mean']:7.0f} {m['gain_per_cpu_hour']['mean']:10.2f}")
    print(f"A run that never reaches the target counts as {results['args']['epochs'] + 1} epochs, and its seconds as its "
          f"training seconds x {results['args']['epochs'] + 1}/{results['args']['epochs']}.")
    uniform_gain = [r["final"] - base for r in rows if r["arm"] == "uniform"]
    if uniform_gain:
        gain = statistics.mean(uniform_gain)
        print(f"uniform GRPO final gain over base: {gain:+.3f} ({gain / results['base_standard_error']:.1f} base SE)")
    out.parent.mkdir(parents=True, exist_ok=True)
    figure = plot(rows, arms, base, target, out.with_suffix(".png"))
    out.write_text(json.dumps({**results, "summary": summary}, indent=2, default=float))
    print(f"plot: {figure}\njson: {out}")


def combine(paths: list[Path], n_boot: int, out: Path) -> None:
    """One report from partial runs of the same benchmark over different seeds (e.g. one
    process per core): they must agree on everything but the seeds and the output."""
    parts = [json.loads(p.read_text()) for p in paths]
    first = parts[0]

    def setup(part: dict) -> dict:
        return {k: v for k, v in part["args"].items() if k not in ("seeds", "out", "combine")} | {
            "base": part["base_accuracy"], "model": part.get("model_fingerprint")}

    for path, part in zip(paths, parts):
        if setup(part) != setup(first):
            raise SystemExit(f"{path}: not the same benchmark as {paths[0]} (arguments, model fingerprint or base accuracy differ)")
    rows = [row for part in parts for row in part["runs"]]
    keys = [(r["arm"], r["seed"]) for r in rows]
    if len(set(keys)) != len(keys):
        raise SystemExit(f"the same arm and seed appear in more than one of {', '.join(map(str, paths))}")
    seeds = sorted({r["seed"] for r in rows})
    results = {
        **first, "args": {**first["args"], "seeds": seeds, "out": str(out)}, "runs": rows,
        "parts": [{"path": str(p), "seeds": part["args"]["seeds"], "seconds": part["seconds"]} for p, part in zip(paths, parts)],
        "seconds": max(part["seconds"] for part in parts), "cpu_seconds": sum(part["cpu_seconds"] for part in parts),
    }
    report(results, first["args"]["arms"], n_boot, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS, help=f"samplers, and {HALF} (GAIN-RL on a seeded half of the prompts)")
    parser.add_argument("--pass-rate-k", type=int, default=8, help="completions per prompt of the base pass rates (learnability's start)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--subset-size", type=int, default=64, help="prompts per epoch")
    parser.add_argument("--n-prompts", type=int, default=1000, help="training prompts")
    parser.add_argument("--held-out", type=int, default=1000)
    parser.add_argument("--max-steps", type=int, default=TASK.max_steps, help="operations per training and held-out problem (at most)")
    parser.add_argument("--target-gain", type=float, default=0.10, help="target = base held-out accuracy + this (0.10: the clear gain the benchmark asks of uniform GRPO)")
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--num-generations", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32, help="completions per optimizer step (per_device_train_batch_size)")
    parser.add_argument("--max-completion-length", type=int, default=40)
    parser.add_argument("--warmup-steps", type=int, default=0, help="optimizer steps of linear learning-rate warm-up")
    parser.add_argument("--lr-scheduler", default="constant", help="transformers lr_scheduler_type")
    parser.add_argument("--grpo", type=json.loads, default={}, help='more trl.GRPOConfig fields as JSON, e.g. \'{"optim": "sgd"}\'')
    parser.add_argument("--temperature", type=float, default=1.0, help="rollout sampling temperature")
    parser.add_argument("--kl-beta", type=float, default=0.0, help="TRL's KL coefficient (GRPOConfig.beta)")
    parser.add_argument("--eval-batch", type=int, default=256, help="held-out problems per greedy generate call")
    parser.add_argument("--n-boot", type=int, default=10000)
    parser.add_argument("--system-prompt", default=TASK_SYSTEM_PROMPT, help="system prompt of the GRPO task and its evaluation")
    parser.add_argument("--sft-steps", type=int, default=BENCH_MODEL.sft_steps, help="supervised warm-up steps of the benchmark model")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch CPU threads: for a model this small one thread wastes nothing, and on a shared machine it runs 2-4x faster than two",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_training.json")
    parser.add_argument("--combine", type=Path, nargs="+", help="report on these partial results (other seeds of the same benchmark) instead of running")
    args = parser.parse_args()
    if args.combine:
        combine(args.combine, args.n_boot, args.out)
        return
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("gainrl_ops.training").setLevel(logging.INFO)  # one line per epoch

    started = time.perf_counter()
    built = time.perf_counter()
    model_config = replace(BENCH_MODEL, sft_steps=args.sft_steps)
    model_path = str(embedded_model_path(model_config, root=Layout.default().models_dir))
    build_seconds = time.perf_counter() - built
    fingerprint = checkpoint_fingerprint(model_path)
    prompt = replace(model_config.prompt, system_prompt=args.system_prompt)
    grpo = {
        "learning_rate": args.learning_rate, "num_generations": args.num_generations,
        "per_device_train_batch_size": args.batch_size, "max_completion_length": args.max_completion_length,
        "temperature": args.temperature, "beta": args.kl_beta, "warmup_steps": args.warmup_steps, "lr_scheduler_type": args.lr_scheduler,
        **args.grpo,
    }
    template = TrainingRunConfig(name="bench", epochs=args.epochs, subset_size=args.subset_size, grpo=grpo, checkpoint_every=10**6)
    with tempfile.TemporaryDirectory(prefix="bench-training-") as scratch:
        layout = Layout(Path(scratch))
        source = DatasetSource(generator=replace(TASK, n_problems=args.n_prompts, seed=77, max_steps=args.max_steps))
        pass_rates = PassRateConfig(k=args.pass_rate_k, max_new_tokens=args.max_completion_length, seed=0)
        orders = prepare(model_path, source, layout, prompt, pass_rates)
        exclude = set(orders["angle"]["id"].to_list())
        held_out = held_out_problems("embedded", args.held_out, 78, exclude, source.generator)
        problems = list(held_out.select("problem", "answer").iter_rows())
        if len(problems) < args.held_out:
            raise SystemExit(f"only {len(problems)} distinct held-out problems for --held-out {args.held_out}")

        evaluation_cpu: list[float] = []  # held-out evaluation is the benchmark's cost, not the sampler's

        def evaluate(model, tokenizer) -> float:
            with Stopwatch() as watch:
                accuracy = greedy_accuracy(model, tokenizer, problems, prompt, batch_size=args.eval_batch, max_new_tokens=args.max_completion_length)
            evaluation_cpu.append(watch.seconds[1])
            return accuracy

        t0 = time.perf_counter()
        base = evaluate(load_model(ModelSpec(model_path, dtype="float32")), load_tokenizer(model_path))
        eval_seconds = time.perf_counter() - t0
        target = base + args.target_gain
        standard_error = math.sqrt(base * (1 - base) / len(problems))
        print(f"model {fingerprint}: base held-out accuracy {base:.3f} (SE {standard_error:.3f}) on {len(problems)} problems; target {target:.3f}; "
              f"{orders['angle'].height} training prompts; one evaluation {eval_seconds:.1f} s; signals (CPU s) "
              + ", ".join(f"{k} {v:.1f}" for k, v in orders["signal_cpu_seconds"].items()) + f"; mean base pass rate {orders['mean_pass_rate']:.3f}")

        rows = []
        for seed in args.seeds:
            for arm in args.arms:
                sampler = "gainrl" if arm == HALF else arm
                run = replace(template, name=f"{arm}-s{seed}", sampler=sampler, seed=seed)
                ranked = orders["length"] if run.ordering == "length" else orders["angle"]
                if arm == HALF:
                    ranked = half_of(ranked, seed)
                evaluation_cpu.clear()
                t0, cpu0 = time.perf_counter(), time.process_time()
                result = train_run(run, model_path, ranked, prompt, layout, lambda *_: "", evaluate)
                run_seconds, run_cpu = time.perf_counter() - t0, time.process_time() - cpu0
                epochs = result.epochs
                curve, seconds = epochs["held_out_accuracy"].to_list(), epochs["seconds"].to_list()
                signal = SIGNAL.get(arm)
                overhead = orders["signal_seconds"][signal] if signal else 0.0
                cpu = run_cpu - sum(evaluation_cpu) + (orders["signal_cpu_seconds"][signal] if signal else 0.0)
                n_epochs, wall, reached = to_target(curve, seconds, target, overhead)
                rows.append({
                    "arm": arm, "sampler": sampler, "seed": seed, "prompts": ranked.height, "curve": curve, "seconds": seconds,
                    "rollout_accuracy": epochs["accuracy"].to_list(), "mu": epochs["mu"].to_list(),
                    "feedback_angle": epochs["feedback_angle"].to_list(), "feedback_seconds": epochs["feedback_seconds"].to_list(),
                    "signal": signal, "signal_seconds": overhead, "epochs_to_target": n_epochs, "seconds_to_target": wall, "reached": reached,
                    "area": area(curve, base), "final": curve[-1], "run_seconds": run_seconds, "run_cpu_seconds": run_cpu,
                    "evaluation_cpu_seconds": sum(evaluation_cpu), "cpu_seconds": cpu, "gain_per_cpu_hour": (curve[-1] - base) / (cpu / 3600),
                })
                print(f"{run.name}: held-out {' '.join(f'{a:.3f}' for a in curve)}; to target {n_epochs if reached else '-'} epochs, "
                      f"{wall:.0f} s; {cpu:.0f} CPU s without evaluation ({run_seconds:.0f} s with it)")

    results = {
        "args": {**vars(args), "out": str(args.out), "combine": None}, "model": asdict(model_config), "model_fingerprint": fingerprint,
        "model_build_seconds": build_seconds,
        "task": asdict(source.generator), "prompt": asdict(prompt), "run_config": asdict(template), "base_accuracy": base,
        "base_standard_error": standard_error, "target": target, "evaluation_seconds": eval_seconds,
        "signal_seconds": orders["signal_seconds"], "signal_cpu_seconds": orders["signal_cpu_seconds"],
        "pass_rates": asdict(pass_rates), "mean_base_pass_rate": orders["mean_pass_rate"], "runs": rows,
        "seconds": time.perf_counter() - started, "cpu_seconds": time.process_time(),
    }
    report(results, args.arms, args.n_boot, args.out)
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
