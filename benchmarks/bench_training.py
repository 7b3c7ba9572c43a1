"""GAIN-RL against uniform GRPO on the embedded default: epochs to a held-out accuracy target.

Both samplers train from the same base checkpoint on the same prompts with the same budget
(epochs x prompts per epoch x generations), over several seeds. The curriculum is the base
checkpoint's angle ranking, computed here with the library scorer. Prints epochs to reach
the target (mean and spread), their ratio, final accuracies, and writes a plot of both
curves and a JSON of every number.

    .venv/bin/python benchmarks/bench_training.py                      # ~15 min on 2 idle cores
    .venv/bin/python benchmarks/bench_training.py --seeds 0 --epochs 3  # smoke test
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import polars as pl
from matplotlib.figure import Figure

from gainrl_ops.core.layout import Layout
from gainrl_ops.core.plotting import save_png
from gainrl_ops.curriculum.catalog import refresh_catalog
from gainrl_ops.curriculum.ranking import export_ranking
from gainrl_ops.data.arithmetic import ArithmeticConfig
from gainrl_ops.data.prompts import PromptConfig
from gainrl_ops.data.shards import tokenize_to_shards
from gainrl_ops.data.sources import DatasetSource, held_out_problems, prepare_dataset
from gainrl_ops.scoring.embedded import EmbeddedModelConfig, embedded_model_path
from gainrl_ops.scoring.models import (
    ModelSpec,
    checkpoint_fingerprint,
    load_model,
    load_tokenizer,
)
from gainrl_ops.scoring.scorer import ScoreContext, score_shards
from gainrl_ops.training.config import TrainingRunConfig
from gainrl_ops.training.evaluation import greedy_accuracy
from gainrl_ops.training.trainer import train_run

RESULTS = Path(__file__).resolve().parent / "results"


def ranked_prompts(model_path: str, source: DatasetSource, layout: Layout, prompt: PromptConfig) -> pl.DataFrame:
    """The training prompts in curriculum order: the `curriculum` SQL view's ranking, the same
    one the `training_run` asset trains on."""
    loaded, label = prepare_dataset(source, layout)
    tokenizer = load_tokenizer(model_path)
    shards = tokenize_to_shards(loaded.table, tokenizer, prompt, layout, source.name, label.version)
    checkpoint = checkpoint_fingerprint(model_path)
    out = layout.scores(source.name, label.version, shards.prompt_fingerprint, checkpoint)
    context = ScoreContext(source.name, label.version, checkpoint, "embedded", shards.tokenizer_fingerprint, shards.prompt_fingerprint, "float32")
    score_shards(load_model(ModelSpec(model_path, dtype="float32")), shards, out, context)
    refresh_catalog(layout.root)
    ranked = pl.read_parquet(export_ranking(layout, source.name, label.version, shards.prompt_fingerprint, checkpoint))
    answers = pl.from_arrow(loaded.table).select("id", "answer")
    return ranked.select("id", "rank", "problem", "difficulty", "angle_score").join(answers, on="id", how="left", maintain_order="left")


def epochs_to_target(curve: list[float], target: float) -> int | None:
    """1-based epoch at which held-out accuracy first reaches the target; None if never."""
    return next((epoch + 1 for epoch, acc in enumerate(curve) if acc >= target), None)


def summarise(values: list[int | None], budget: int) -> str:
    reached = [v for v in values if v is not None]
    spread = f" ± {statistics.stdev(reached):.1f}" if len(reached) > 1 else ""
    mean = f"{statistics.mean(reached):.1f}{spread}" if reached else "-"
    return f"{mean} (reached in {len(reached)}/{len(values)} seeds within {budget} epochs)"


def plot(curves: dict[str, list[list[float]]], base: float, target: float, path: Path) -> Path:
    fig = Figure(figsize=(7, 4.5), dpi=100, layout="constrained")
    ax = fig.subplots()
    for sampler, runs in curves.items():
        epochs = list(range(0, len(runs[0]) + 1))
        mean = [base] + [statistics.mean(r[i] for r in runs) for i in range(len(runs[0]))]
        low = [base] + [min(r[i] for r in runs) for i in range(len(runs[0]))]
        high = [base] + [max(r[i] for r in runs) for i in range(len(runs[0]))]
        line, = ax.plot(epochs, mean, marker="o", label=f"{sampler} (mean of {len(runs)} seeds)")
        ax.fill_between(epochs, low, high, color=line.get_color(), alpha=0.2)
    ax.axhline(target, color="grey", linestyle="--", label=f"target {target:.2f}")
    ax.set(xlabel="epoch", ylabel="held-out greedy accuracy", title="GAIN-RL vs uniform GRPO (embedded default)")
    ax.legend()
    return save_png(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--subset-size", type=int, default=64, help="prompts per epoch")
    parser.add_argument("--n-prompts", type=int, default=1000, help="training prompts")
    parser.add_argument("--held-out", type=int, default=200)
    parser.add_argument("--target-gain", type=float, default=0.05, help="target = base accuracy + this")
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    args = parser.parse_args()

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-training-") as scratch:
        layout = Layout(Path(scratch))
        model_path = str(embedded_model_path(EmbeddedModelConfig(), root=Layout.default().models_dir))
        prompt = PromptConfig()
        source = DatasetSource(generator=ArithmeticConfig(n_problems=args.n_prompts, seed=77))
        ranked = ranked_prompts(model_path, source, layout, prompt)
        exclude = set(ranked["id"].to_list())
        held_out = held_out_problems("embedded", args.held_out, 78, exclude, source.generator)
        problems = list(held_out.select("problem", "answer").iter_rows())

        def evaluate(model, tokenizer) -> float:
            return greedy_accuracy(model, tokenizer, problems, prompt)

        base = evaluate(load_model(ModelSpec(model_path, dtype="float32")), load_tokenizer(model_path))
        target = base + args.target_gain
        print(f"base held-out accuracy {base:.3f}; target {target:.3f}; {ranked.height} ranked prompts")

        template = TrainingRunConfig(name="bench", epochs=args.epochs, subset_size=args.subset_size, grpo={"learning_rate": args.learning_rate}, checkpoint_every=10**6)
        curves: dict[str, list[list[float]]] = {"gainrl": [], "uniform": []}
        rows = []
        for seed in args.seeds:
            for sampler in curves:
                run = replace(template, name=f"{sampler}-s{seed}", sampler=sampler, seed=seed)
                t0 = time.perf_counter()
                result = train_run(run, model_path, ranked, prompt, layout, lambda *_: "", evaluate)
                curve = result.epochs["held_out_accuracy"].to_list()
                curves[sampler].append(curve)
                rows.append({"sampler": sampler, "seed": seed, "curve": curve, "rollout_accuracy": result.epochs["accuracy"].to_list(),
                             "mu": result.epochs["mu"].to_list(), "epochs_to_target": epochs_to_target(curve, target),
                             "final": curve[-1], "seconds": time.perf_counter() - t0})
                print(f"{run.name}: held-out {' '.join(f'{a:.2f}' for a in curve)}  ({rows[-1]['seconds']:.0f} s)")

    print(f"\n{'sampler':8} {'epochs to target':45} {'final accuracy':>16}")
    to_target = {s: [r["epochs_to_target"] for r in rows if r["sampler"] == s] for s in curves}
    finals = {s: [r["final"] for r in rows if r["sampler"] == s] for s in curves}
    for sampler in curves:
        print(f"{sampler:8} {summarise(to_target[sampler], args.epochs):45} {statistics.mean(finals[sampler]):16.3f}")
    # Censored runs count as budget + 1 epochs, so a sampler that never gets there cannot look faster.
    mean_epochs = {s: statistics.mean(v if v is not None else args.epochs + 1 for v in to_target[s]) for s in curves}
    ratio = mean_epochs["uniform"] / mean_epochs["gainrl"]
    print(f"\nepochs-to-target ratio uniform / gainrl = {ratio:.2f} (published: about 2.5; > 1 means GAIN-RL is faster)")
    RESULTS.mkdir(exist_ok=True)
    figure = plot(curves, base, target, RESULTS / "bench_training.png")
    (RESULTS / "bench_training.json").write_text(json.dumps({
        "args": vars(args), "base_accuracy": base, "target": target, "runs": rows,
        "mean_epochs_to_target": mean_epochs, "ratio_uniform_over_gainrl": ratio,
        "run_config": asdict(template), "seconds": time.perf_counter() - started,
    }, indent=2))
    print(f"plot: {figure}\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
