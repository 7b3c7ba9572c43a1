"""Signal diagnostics: does angle concentration predict gradient strength beyond prompt length?

GAIN-RL ranks prompts on the claim that a higher angle score means a larger gradient update.
For a seeded sample of scored prompts this measures each prompt's gradient norm under the
training objective (`gradients.py`: GRPO loss on sampled completions rewarded by the training
reward) and correlates it with the stored score, its two components and the prompt length.
The partial correlation controlling for length answers whether the score is more than a
length proxy; its bootstrap interval gives the verdict.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl
import torch
from matplotlib.figure import Figure
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from gainrl_ops.core.plotting import float_column, save_png
from gainrl_ops.core.progress import bar as progress_bar
from gainrl_ops.core.stats import Correlation, correlation, finite_or_none
from gainrl_ops.core.storage import write_parquet_atomic, write_text_atomic
from gainrl_ops.data.answers import answers_match, extract_answer
from gainrl_ops.data.prompts import PromptConfig, render_prompt
from gainrl_ops.diagnostics.config import DiagnosticsConfig
from gainrl_ops.diagnostics.gradients import (
    Rollouts,
    completion_logps,
    gradient_norm,
    group_advantages,
    grpo_loss,
    nll_loss,
    sample_rollouts,
)
from gainrl_ops.scoring.models import eval_mode

REQUIRED_COLUMNS: tuple[str, ...] = ("id", "problem", "answer", "angle_score", "c_intra", "c_inter", "n_tokens")
GRPO = "grpo"
REFERENCE_NLL = "reference_nll"
LENGTH = "n_tokens"
# (predictor, control): Spearman with the gradient norm, partial when a control is given.
ASSOCIATIONS: tuple[tuple[str, str | None], ...] = (
    ("angle_score", None),
    ("c_intra", None),
    ("c_inter", None),
    (LENGTH, None),
    ("angle_score", LENGTH),
)


@dataclass(frozen=True)
class Association:
    """Spearman correlation of the gradient norm with `predictor` (partial given `control`),
    over the rows of `subset` ("all", or "grpo": rows whose norm comes from the GRPO loss)."""

    subset: str
    predictor: str
    control: str | None
    correlation: Correlation

    @property
    def label(self) -> str:
        return self.predictor + (f" | {self.control}" if self.control else "")


@dataclass(frozen=True)
class SignalReport:
    """Per-prompt rows, the associations, and the one-line verdict."""

    rows: pl.DataFrame
    associations: list[Association]
    verdict: str
    config: DiagnosticsConfig

    def association(self, predictor: str, control: str | None = None, subset: str = "all") -> Correlation:
        return find(self.associations, predictor, control, subset)

    def table(self) -> pl.DataFrame:
        """One row per association: subset, association, estimate, low, high, n, significant."""
        return pl.DataFrame(
            [
                {
                    "subset": a.subset, "association": a.label, "estimate": finite_or_none(a.correlation.estimate),
                    "low": finite_or_none(a.correlation.low), "high": finite_or_none(a.correlation.high), "n": a.correlation.n,
                    "significant": a.correlation.significant,
                }
                for a in self.associations
            ],
            schema={"subset": pl.String, "association": pl.String, "estimate": pl.Float64, "low": pl.Float64,
                    "high": pl.Float64, "n": pl.Int64, "significant": pl.Boolean},
        )

    def summary(self) -> dict[str, object]:
        """What `<stem>.json` holds: the verdict, the partial correlation behind it, counts,
        every association and the configuration."""
        counts = self.rows["gradient_source"].value_counts()
        partial = self.association("angle_score", LENGTH)
        return {
            "verdict": self.verdict,
            "angle_predicts_gradient_beyond_length": beyond_length(partial),
            "partial_angle_given_length": {k: finite_or_none(v) if isinstance(v, float) else v for k, v in asdict(partial).items()},
            "n_prompts": self.rows.height,
            "gradient_source": dict(zip(counts["gradient_source"].to_list(), counts["count"].to_list())),
            "associations": self.table().to_dicts(),
            "config": asdict(self.config),
        }


def sample_prompts(scored: pl.DataFrame, size: int, seed: int) -> pl.DataFrame:
    """`size` rows drawn without replacement; sorting by id first makes the draw depend on the
    seed and the set of prompts, not on the order they were stored in."""
    missing = [c for c in REQUIRED_COLUMNS if c not in scored.columns]
    if missing:
        raise ValueError(f"scored prompts lack columns {missing}; they have {scored.columns}")
    ordered = scored.sort("id")
    return ordered if size >= ordered.height else ordered.sample(size, seed=seed)


def reference_solution(answer: str, metadata: str | None) -> str:
    """The text the fallback loss scores: the row's worked solution when it carries one (a
    `solution` field, or any text field whose `####` answer is the reference answer, like verl's
    `extra_info.answer`), else the bare answer."""
    fields = json.loads(metadata) if metadata else {}
    if isinstance(fields.get("solution"), str):
        return fields["solution"]
    for text in _strings(fields):
        if "####" in text and answers_match(extract_answer(text), answer):
            return text
    return answer


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _reference_ids(tokenizer: PreTrainedTokenizerBase, text: str) -> torch.Tensor:
    """The reference as a completion: its tokens and the end-of-turn token a rollout ends with."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        ids = ids + [tokenizer.eos_token_id]
    return torch.tensor([ids])


def measure_gradients(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    sample: pl.DataFrame,
    prompt: PromptConfig,
    config: DiagnosticsConfig = DiagnosticsConfig(),
    progress: bool = True,
) -> pl.DataFrame:
    """`sample` with the measurement per prompt: grad_norm, gradient_source ("grpo", or
    "reference_nll" when every completion of the group got the same reward, so the GRPO
    advantages and gradient are 0), loss, reward_mean, reward_std, completion_tokens (mean
    per completion) and reference_tokens (fallback rows only)."""
    torch.manual_seed(config.seed)
    rendered = [render_prompt(tokenizer, q, prompt).input_ids for q in sample["problem"].to_list()]
    answers = sample["answer"].to_list()
    metadata = sample["metadata"].to_list() if "metadata" in sample.columns else [None] * sample.height
    rows: list[dict[str, object]] = []
    # Dropout off: the norm should not depend on a dropout mask.
    with eval_mode(model), progress_bar(sample.height, "gradient norms", unit="prompt", disable=not progress) as bar:
        for start in range(0, sample.height, config.generation_batch):
            stop = min(start + config.generation_batch, sample.height)
            rollouts = sample_rollouts(
                model, tokenizer, rendered[start:stop], answers[start:stop],
                config.num_generations, config.max_completion_length, config.temperature,
            )
            for i, group in zip(range(start, stop), rollouts):
                rows.append(_measure_one(model, tokenizer, rendered[i], group, answers[i], metadata[i], config))
                bar.update()
    return pl.concat([sample, pl.DataFrame(rows, schema=_MEASURE_SCHEMA)], how="horizontal")


_MEASURE_SCHEMA = {
    "grad_norm": pl.Float64, "gradient_source": pl.String, "loss": pl.Float64, "reward_mean": pl.Float64,
    "reward_std": pl.Float64, "completion_tokens": pl.Float64, "reference_tokens": pl.Int64,
}


def _measure_one(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt_ids: list[int],
    group: Rollouts,
    answer: str,
    metadata: str | None,
    config: DiagnosticsConfig,
) -> dict[str, object]:
    rewards = group.rewards
    row = {
        "reward_mean": float(rewards.mean()),
        "reward_std": float(rewards.std(correction=1)),
        "completion_tokens": float(group.mask.sum(dim=1).mean()),
        "reference_tokens": None,
    }
    if bool((rewards != rewards[0]).any()):
        logps = completion_logps(model, prompt_ids, group.completion_ids, group.mask, config.temperature)
        loss = grpo_loss(logps, group.mask.to(logps.device), group_advantages(rewards).to(logps.device), config.max_completion_length)
        source = GRPO
    else:
        reference = _reference_ids(tokenizer, reference_solution(answer, metadata))
        mask = torch.ones_like(reference, dtype=torch.float32)
        logps = completion_logps(model, prompt_ids, reference, mask)
        loss = nll_loss(logps, mask.to(logps.device))
        source = REFERENCE_NLL
        row["reference_tokens"] = int(reference.shape[1])
    return {**row, "grad_norm": gradient_norm(model, loss), "gradient_source": source, "loss": float(loss.detach())}


def associations(rows: pl.DataFrame, config: DiagnosticsConfig = DiagnosticsConfig()) -> list[Association]:
    """Every association of `ASSOCIATIONS`, over all rows and over the GRPO rows alone (a
    fallback norm is on another scale, so mixing the two can blur or fake a trend)."""
    out = []
    for subset, frame in (("all", rows), (GRPO, rows.filter(pl.col("gradient_source") == GRPO))):
        grad = float_column(frame, "grad_norm")
        for predictor, control in ASSOCIATIONS:
            z = float_column(frame, control) if control else None
            corr = correlation(float_column(frame, predictor), grad, z=z, n_boot=config.n_boot, seed=config.seed, level=config.level)
            out.append(Association(subset, predictor, control, corr))
    return out


def find(found: list[Association], predictor: str, control: str | None = None, subset: str = "all") -> Correlation:
    """The correlation of one association (`subset` "all" or "grpo")."""
    return next(a.correlation for a in found if (a.predictor, a.control, a.subset) == (predictor, control, subset))


def verdict(found: list[Association], level: float) -> str:
    """The one line a user reads: is the partial correlation of gradient norm with the angle
    score, controlling for length, positive with the interval excluding 0?"""
    partial = find(found, "angle_score", LENGTH)
    line = f"angle predicts gradient norm beyond length: {'yes' if beyond_length(partial) else 'no'} at {level:.0%} (partial Spearman {partial}"
    if partial.high < 0:
        line += ", significantly negative"
    grpo = find(found, "angle_score", LENGTH, GRPO)
    return line + f"; GRPO rows only: {grpo if math.isfinite(grpo.estimate) else f'n/a (n={grpo.n})'})"


def beyond_length(partial: Correlation) -> bool:
    """The claim holds when the whole interval of the partial correlation is above 0."""
    return partial.low > 0


def diagnose(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    scored: pl.DataFrame,
    prompt: PromptConfig,
    config: DiagnosticsConfig = DiagnosticsConfig(),
    progress: bool = True,
) -> SignalReport:
    """Sample `scored` (one row per prompt: id, problem, answer, angle_score, c_intra, c_inter,
    n_tokens, optionally metadata, as the `curriculum` view joined with `prompts`), measure
    gradient norms under `model`, and correlate them with the scores."""
    sample = sample_prompts(scored, config.sample_size, config.seed)
    rows = measure_gradients(model, tokenizer, sample, prompt, config, progress)
    found = associations(rows, config)
    return SignalReport(rows, found, verdict(found, config.level), config)


def plot_signal(report: SignalReport, target: Path) -> Path:
    """Gradient norm against angle score and against length (log scale, GRPO and fallback rows
    in two colours), and angle score against length coloured by gradient-norm rank."""
    rows = report.rows
    fig = Figure(figsize=(15, 4.8), dpi=100, layout="constrained")
    axes = fig.subplots(1, 3)
    for source, colour in ((GRPO, "tab:blue"), (REFERENCE_NLL, "tab:orange")):
        part = rows.filter(pl.col("gradient_source") == source)
        for ax, x in zip(axes[:2], ("angle_score", LENGTH)):
            ax.scatter(float_column(part, x), float_column(part, "grad_norm"), s=14, alpha=0.6, color=colour,
                       edgecolors="none", label=f"{source} ({part.height})")
    for ax, (x, label) in zip(axes[:2], (("angle_score", "angle score"), (LENGTH, "prompt length (tokens)"))):
        if (float_column(rows, "grad_norm") > 0).all():
            ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("gradient norm")
        ax.set_title(f"Spearman ρ = {report.association(x)}", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    grad_rank = rows["grad_norm"].rank().to_numpy() / max(rows.height, 1)
    points = axes[2].scatter(float_column(rows, LENGTH), float_column(rows, "angle_score"), c=grad_rank, cmap="viridis", s=14)
    fig.colorbar(points, ax=axes[2], label="gradient-norm percentile")
    axes[2].set_xlabel("prompt length (tokens)")
    axes[2].set_ylabel("angle score")
    axes[2].set_title(f"partial ρ (angle | length) = {report.association('angle_score', LENGTH)}", fontsize=10)
    axes[2].grid(True, alpha=0.3)
    fig.suptitle(report.verdict, fontsize=10)
    return save_png(fig, target)


def write_report(report: SignalReport, stem: Path) -> dict[str, Path]:
    """`<stem>.parquet` (per-prompt rows), `<stem>.json` (verdict and associations) and
    `<stem>.png` (scatter plots), each written atomically."""
    stem = Path(stem)
    rows = report.rows.drop("problem", "answer", "metadata", strict=False)
    return {
        "rows": write_parquet_atomic(rows.to_arrow(), stem.with_suffix(".parquet")),
        "summary": write_text_atomic(json.dumps(report.summary(), indent=2), stem.with_suffix(".json")),
        "plot": plot_signal(report, stem.with_suffix(".png")),
    }
