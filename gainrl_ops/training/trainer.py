"""GRPO training with a curriculum sampler, on upstream TRL (no fork).

`CurriculumGRPOTrainer` replaces `_get_train_sampler`: the sampler keeps TRL's
`RepeatSampler` layout (each prompt `num_generations` times, the same order on every
process) and a constant length per epoch, and draws a new subset at `set_epoch`. It also
measures the feedback angle of each generation batch's rollouts (a prefill of the generated
sequences under the current policy, see `feedback.py`; no second generation). After each
epoch, callbacks that each do one job close the loop: `CurriculumFeedback` (accuracy, mean
feedback angle and each prompt's group rewards over the rollouts of all processes, the
sampler update), `StoreCheckpoints`, `HeldOutEvaluation`, `EpochRecorder` (the epoch,
selection and rollout rows) and `ResumePoints`. Under
`accelerate launch` every process runs them; only the main process writes (see `ranks.py`).
`from trl import ...` costs seconds, so nothing imports this module at Dagster load time.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from datasets import Dataset
from torch.utils.data import Sampler
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PrinterCallback,
    ProgressCallback,
    TrainerCallback,
)
from trl import GRPOConfig, GRPOTrainer
from trl.trainer.utils import RepeatSampler

from gainrl_ops.core import columns
from gainrl_ops.core.columns import arrow_schema
from gainrl_ops.core.layout import Layout
from gainrl_ops.core.storage import (
    atomic_directory,
    write_parquet_atomic,
    write_text_atomic,
)
from gainrl_ops.data.prompts import PromptConfig, chat_messages, render_prompt
from gainrl_ops.scoring.checkpoints import CheckpointRecord, LocalCheckpointStore, checkpoint_fingerprint
from gainrl_ops.scoring.models import eval_mode
from gainrl_ops.scoring.scorer import score_batch
from gainrl_ops.training.config import PASS_RATE, TrainingRunConfig
from gainrl_ops.training.evaluation import greedy_accuracy
from gainrl_ops.training.feedback import RolloutAngles, gathered_groups, rollout_feedback
from gainrl_ops.training.plots import plot_runs
from gainrl_ops.training.ranks import check_same_selection, from_main_process, is_main_process, wait_for_everyone
from gainrl_ops.training.resume import ResumePoint, find_resume_point, prepare_resume, resume_key, write_resume_state
from gainrl_ops.training.rewards import correctness_reward
from gainrl_ops.training.sampling import EpochSampler

log = logging.getLogger(__name__)

EPOCHS_SCHEMA = pl.from_arrow(arrow_schema(columns.EPOCHS).empty_table()).schema
ROLLOUTS_SCHEMA = pl.from_arrow(arrow_schema(columns.ROLLOUTS).empty_table()).schema


class CorrectnessReward:
    """TRL reward function: 1 for a correct final answer. Keeps the epoch's rewards and the
    prompt id of each (TRL passes the dataset's `id` column), so the curriculum can read the
    epoch accuracy and each prompt's group (instance state, not a module-level list)."""

    __name__ = "correctness"

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.rewards: list[float] = []

    def __call__(self, prompts: list, completions: list, answer: list[str], id: list[str], **_: Any) -> list[float]:
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        rewards = [correctness_reward(text, ref) for text, ref in zip(texts, answer)]
        self.ids += id
        self.rewards += rewards
        return rewards

    def take(self) -> tuple[list[str], list[float]]:
        """The prompt ids and rewards since the last take, then reset."""
        taken = self.ids, self.rewards
        self.ids, self.rewards = [], []
        return taken


class CurriculumSampler(Sampler[int]):
    """TRL's RepeatSampler layout over the ranks the curriculum selects for the epoch."""

    def __init__(self, epoch_sampler: EpochSampler, subset_size: int, mini_repeat_count: int, batch_size: int, repeat_count: int):
        if subset_size % batch_size:
            raise ValueError(f"subset_size {subset_size} must be a multiple of the {batch_size} prompts per generation batch")
        self.epoch_sampler = epoch_sampler
        self.layout = dict(mini_repeat_count=mini_repeat_count, batch_size=batch_size, repeat_count=repeat_count)
        self.subset_size = subset_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        ranks = self.epoch_sampler.select(self.epoch)
        positions = RepeatSampler(range(self.subset_size), shuffle=False, **self.layout)
        return (int(ranks[i]) for i in positions)

    def __len__(self) -> int:
        return len(RepeatSampler(range(self.subset_size), shuffle=False, **self.layout))


class CurriculumGRPOTrainer(GRPOTrainer):
    """GRPOTrainer whose prompts per epoch come from an `EpochSampler` over the ranked dataset.
    With `rollout_angles`, the feedback angle of every training rollout is added to it."""

    def __init__(self, *args: Any, epoch_sampler: EpochSampler, subset_size: int, rollout_angles: RolloutAngles | None = None, **kwargs: Any):
        self.epoch_sampler = epoch_sampler
        self.subset_size = subset_size
        self.rollout_angles = rollout_angles
        super().__init__(*args, **kwargs)

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        output = super()._generate_and_score_completions(inputs)
        if self.rollout_angles is not None and self.model.training:
            self.rollout_angles.measure(self.accelerator.unwrap_model(self.model), output)
        return output

    def _get_train_sampler(self, dataset: Dataset | None = None) -> Sampler:
        return CurriculumSampler(
            self.epoch_sampler,
            self.subset_size,
            mini_repeat_count=self.num_generations,
            batch_size=self.args.generation_batch_size // self.num_generations,
            repeat_count=self.num_iterations * self.args.steps_per_generation,
        )


@dataclass(frozen=True)
class SamplerUpdate:
    """What the sampler got after one epoch, the same on every process: `accuracy` and
    `feedback_angle` over all rollouts of all processes, `prompt_score` the main process's
    (NaN unless measured), and mu before and after the update."""

    epoch: int
    ranks: np.ndarray
    mu: float
    accuracy: float
    feedback_angle: float
    prompt_score: float
    mu_next: float
    seconds: float  # this process's feedback measurements (rollout prefills, prompt score)
    rollouts: pl.DataFrame  # one row per prompt trained on: id, n, mean_reward, reward_std, all_equal


def observe_rollouts(sampler: EpochSampler, rollouts: pl.DataFrame, positions: dict[str, int]) -> None:
    """Give the sampler each prompt's mean group reward, at the prompt's rank; the live epoch
    and a resumed run's replay of its records go through here alike."""
    ranks = np.asarray([positions[i] for i in rollouts["id"].to_list()], dtype=np.int64)
    sampler.observe(ranks, rollouts["mean_reward"].to_numpy())


@dataclass
class CurriculumFeedback(TrainerCallback):
    """The GAIN-RL loop, also for your own TRL script: after each epoch the sampler observes
    each prompt's mean group reward (from `reward`) and gets the rollout accuracy and mean
    feedback angle (from `angles`, the `RolloutAngles` the trainer was given as
    `rollout_angles`), all over the rollouts of all processes, so every rank's sampler moves
    alike. Before each epoch, every rank checks that it selected what rank 0 selected.
    `positions` maps a prompt id to its rank (dataset index); by default it is read from the
    train dataset's `id` column when training begins.

    `prompt_score(model, ranks)`, if given, is measured after each epoch (the mean angle score
    of its prompts); with `from_prompts` the sampler gets it instead of the rollout angle.
    `last` holds the latest epoch's feedback for the other callbacks."""

    sampler: EpochSampler
    reward: CorrectnessReward
    angles: RolloutAngles
    prompt_score: Callable[[PreTrainedModel, np.ndarray], float] | None = None
    from_prompts: bool = False
    positions: dict[str, int] | None = None
    last: SamplerUpdate | None = None

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs: Any):
        if self.positions is None:
            self.positions = {prompt_id: rank for rank, prompt_id in enumerate(train_dataloader.dataset["id"])}
        return control

    def on_epoch_begin(self, args, state, control, **kwargs: Any):
        epoch = round(state.epoch)
        check_same_selection(epoch, self.sampler.select(epoch))
        return control

    def on_epoch_end(self, args, state, control, model: PreTrainedModel | None = None, **kwargs: Any):
        epoch = round(state.epoch) - 1
        ranks = self.sampler.select(epoch)
        ids, rewards = self.reward.take()
        groups = gathered_groups(ids, rewards)
        rollouts = rollout_feedback(rewards, self.angles)
        seconds, prompt_score = rollouts.seconds, float("nan")
        if self.prompt_score is not None:
            started = time.perf_counter()
            # Every rank runs the forward (a sharded model needs them all); the main process's value counts.
            prompt_score = from_main_process(self.prompt_score(model, ranks))
            seconds += time.perf_counter() - started
        mu = self.sampler.mu
        observe_rollouts(self.sampler, groups, self.positions)
        self.sampler.update(rollouts.accuracy, prompt_score if self.from_prompts else rollouts.angle)
        self.last = SamplerUpdate(epoch, ranks, mu, rollouts.accuracy, rollouts.angle, prompt_score, self.sampler.mu, seconds, groups)
        return control


@dataclass
class StoreCheckpoints(TrainerCallback):
    """A checkpoint every `run.checkpoint_every` epochs and after the last, saved by the main
    process with `save(model, epoch)`; the others wait until it is complete. `last` is where
    the latest epoch's went (None when not saved, and on the other processes), `fingerprint`
    its content fingerprint, on every process (None when not saved or not a folder)."""

    run: TrainingRunConfig
    save: Callable[[PreTrainedModel, int], str]
    last: str | None = None
    fingerprint: str | None = None

    def on_epoch_end(self, args, state, control, model: PreTrainedModel | None = None, **kwargs: Any):
        epoch = round(state.epoch) - 1
        due = epoch + 1 == self.run.epochs or (epoch + 1) % self.run.checkpoint_every == 0
        self.last = str(self.save(model, epoch)) if due and is_main_process() else None
        self.fingerprint = None
        if due:
            wait_for_everyone()
            saved = bool(self.last) and Path(self.last).is_dir()
            self.fingerprint = from_main_process(checkpoint_fingerprint(self.last) if saved else None)
        return control


@dataclass
class HeldOutEvaluation(TrainerCallback):
    """Held-out accuracy after each epoch, on the main process (the others wait). Its time is
    a measurement, not training: `seconds` adds it up so the epoch rows can leave it out."""

    evaluate: Callable[[PreTrainedModel], float]
    last: float | None = None
    seconds: float = 0.0

    def on_epoch_end(self, args, state, control, model: PreTrainedModel | None = None, **kwargs: Any):
        self.last = None
        if is_main_process():
            started = time.perf_counter()
            with eval_mode(model):
                self.last = self.evaluate(model)
            self.seconds += time.perf_counter() - started
        wait_for_everyone()
        return control


@dataclass
class EpochRecorder(TrainerCallback):
    """One row per epoch, per selected prompt and per prompt trained on (its group's rewards),
    and one log line, from what the feedback, checkpoint and evaluation callbacks did this
    epoch (they run before it). The main process's rows are every process's, so each holds the
    same tables. `start_checkpoint` is the fingerprint of the checkpoint the next epoch starts
    from: the base's (None if unknown) until an epoch saves one."""

    run: TrainingRunConfig
    ranked: pl.DataFrame
    sampler: EpochSampler
    feedback: CurriculumFeedback
    checkpoints: StoreCheckpoints
    evaluation: HeldOutEvaluation | None = None
    start_checkpoint: str | None = None
    epochs: list[dict[str, Any]] = field(default_factory=list)
    selected: list[list[int]] = field(default_factory=list)
    rollouts: list[dict[str, Any]] = field(default_factory=list)
    _started: float = field(default_factory=time.perf_counter)

    def seconds(self) -> float:
        """Wall time of the run so far (over resumes), held-out evaluation left out."""
        return time.perf_counter() - self._started - (self.evaluation.seconds if self.evaluation else 0.0)

    def state(self) -> dict[str, Any]:
        return {
            "epochs": self.epochs, "selected": self.selected, "rollouts": self.rollouts,
            "start_checkpoint": self.start_checkpoint, "seconds": self.seconds(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a resume point: the rows so far, and the clock."""
        self.epochs, self.selected, self.rollouts = state["epochs"], state["selected"], state["rollouts"]
        self.start_checkpoint = state["start_checkpoint"]
        self._started = time.perf_counter() - state["seconds"]

    def on_epoch_end(self, args, state, control, **kwargs: Any):
        fed = self.feedback.last
        held_out = self.evaluation.last if self.evaluation else None
        row = from_main_process({
            "run": self.run.name, "epoch": fed.epoch, "sampler": self.run.sampler, "feedback": self.run.feedback,
            "mu": fed.mu, "sigma": self.sampler.sigma, "accuracy": fed.accuracy, "held_out_accuracy": held_out,
            "feedback_angle": fed.feedback_angle, "prompt_score": fed.prompt_score, "mu_next": fed.mu_next,
            "seconds": self.seconds(), "feedback_seconds": fed.seconds,
            "checkpoint_path": self.checkpoints.last,
        })
        self.epochs.append(row)
        self.selected.append([int(r) for r in fed.ranks])
        self.rollouts += [{"run": self.run.name, "epoch": fed.epoch, "checkpoint": self.start_checkpoint, **group} for group in fed.rollouts.iter_rows(named=True)]
        self.start_checkpoint = self.checkpoints.fingerprint
        if is_main_process():
            held = "" if held_out is None else f", held-out accuracy {held_out:.3f}"
            log.info(
                "run %s epoch %d/%d: rollout accuracy %.3f, feedback angle %.4f, prompt score %.3f, mu %.1f -> %.1f%s (%.0f s)",
                self.run.name, fed.epoch + 1, self.run.epochs, fed.accuracy, fed.feedback_angle, fed.prompt_score,
                fed.mu, fed.mu_next, held, row["seconds"],
            )
        return control

    def tables(self) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        """The epoch rows, one row per selected prompt (run, epoch, rank (1-based), id), and one
        per prompt trained on in an epoch (`columns.ROLLOUTS`)."""
        epochs = [e for e, ranks in enumerate(self.selected) for _ in ranks]
        ranks = np.asarray([r for ranks in self.selected for r in ranks], dtype=np.int64)
        return pl.DataFrame(self.epochs, schema=EPOCHS_SCHEMA), pl.DataFrame({
            "run": [self.run.name] * len(ranks), "epoch": pl.Series(epochs, dtype=pl.Int32), "rank": ranks + 1,
            "id": self.ranked["id"].gather(ranks),
        }), pl.DataFrame(self.rollouts, schema=ROLLOUTS_SCHEMA)


@dataclass
class ResumePoints(TrainerCallback):
    """TRL has just saved its checkpoint after an epoch (every process its part): the main
    process writes the sampler state and the rows beside it, last, so the folder becomes a
    resume point only once it is complete; the others wait for it."""

    key: str
    sampler: EpochSampler
    recorder: EpochRecorder
    positions: dict[str, int]

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a resume point: the sampler where it was (mu, history, RNG), the rows and
        the clock; the per-prompt rewards of the reward-based samplers are rebuilt by replaying
        the rollout records, epoch by epoch."""
        self.sampler.load_state_dict(state["sampler"])
        self.recorder.restore(state)
        rollouts = pl.DataFrame(self.recorder.rollouts, schema=ROLLOUTS_SCHEMA)
        for (_,), epoch in rollouts.group_by("epoch", maintain_order=True):
            observe_rollouts(self.sampler, epoch, self.positions)

    def on_save(self, args, state, control, **kwargs: Any):
        if is_main_process():
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            write_resume_state(folder, self.key, {"sampler": self.sampler.state_dict(), **self.recorder.state()})
        wait_for_everyone()
        return control


def mean_prompt_score(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompt: PromptConfig, problems: list[str], inter_weight: float
) -> float:
    """Mean angle score of `problems` under the current policy (prefill only)."""
    rendered = [render_prompt(tokenizer, q, prompt) for q in problems]
    with eval_mode(model):
        scores = score_batch(model, [r.input_ids for r in rendered], [r.system_span for r in rendered], [r.question_span for r in rendered], inter_weight)
    return float(torch.nanmean(scores.angle_score))


@dataclass(frozen=True)
class TrainingResult:
    """Per-epoch rows (run, epoch, mu, sigma, accuracy, feedback_angle, ...), per-selection rows
    (run, epoch, rank, id) and per-rollout-group rows (run, epoch, checkpoint, id, n,
    mean_reward, reward_std, all_equal), as written to `epochs.parquet`, `selections.parquet`
    and `rollouts.parquet`."""

    epochs: pl.DataFrame
    selections: pl.DataFrame
    rollouts: pl.DataFrame
    checkpoints: list[str]
    directory: Path


def grpo_dataset(ranked: pl.DataFrame, tokenizer: PreTrainedTokenizerBase, prompt: PromptConfig) -> Dataset:
    """Rows in rank order (row i = rank i + 1), so a rank is a dataset index. Chat prompts
    when the tokenizer has a chat template (TRL renders them), plain text otherwise."""
    problems = ranked["problem"].to_list()
    prompts: list[Any] = (
        [chat_messages(q, prompt) for q in problems]
        if tokenizer.chat_template is not None
        else [render_prompt(tokenizer, q, prompt).text for q in problems]
    )
    return Dataset.from_dict({"prompt": prompts, "answer": ranked["answer"].to_list(), "id": ranked["id"].to_list()})


def grpo_config(run: TrainingRunConfig, output_dir: Path) -> GRPOConfig:
    """TRL settings: the run's `grpo` fields, plus what the curriculum loop needs (`output_dir`
    receives the resume points). bf16 only on a GPU that has it (TRL defaults it on, 2-2.7x
    slower on CPU)."""
    known = {f.name for f in dataclasses.fields(GRPOConfig)}
    unknown = sorted(set(run.grpo) - known)
    if unknown:
        raise ValueError(f"training run {run.name!r}: {unknown} are not trl.GRPOConfig fields")
    cuda = torch.cuda.is_available()
    return GRPOConfig(**{
        "bf16": cuda and torch.cuda.is_bf16_supported(),
        **run.grpo,
        "output_dir": str(output_dir),
        "num_train_epochs": run.epochs,
        "seed": run.seed,
        "use_cpu": not cuda,
        "use_vllm": False,
        "report_to": "none",
        # A resume point after every epoch (weights, optimizer, scheduler, RNG); the last two
        # are kept, so a kill in the middle of a save still leaves a complete one.
        "save_strategy": "epoch",
        "save_total_limit": 2,
        "save_only_model": False,
        "logging_steps": 1,
        "dataloader_num_workers": 0,
    })


def train_run(
    run: TrainingRunConfig,
    model_path: str,
    ranked: pl.DataFrame,
    prompt: PromptConfig,
    layout: Layout,
    save_checkpoint: Callable[[PreTrainedModel, PreTrainedTokenizerBase, int], str],
    evaluate: Callable[[PreTrainedModel, PreTrainedTokenizerBase], float] | None = None,
    callbacks: Sequence[TrainerCallback] = (),
    base_checkpoint: str | None = None,
) -> TrainingResult:
    """Train `run` from the checkpoint at `model_path` on the `ranked` prompts (columns id,
    problem, answer, in curriculum order; `pass_rate` too for the learnability sampler: the
    base checkpoint's pass rate of each prompt, null where it has none) and write the epoch,
    selection and rollout tables.

    `save_checkpoint(model, tokenizer, epoch)` stores a checkpoint and returns where it went;
    `evaluate(model, tokenizer)`, if given, is the held-out accuracy recorded after each epoch;
    `callbacks` are more TRL callbacks; `base_checkpoint` is the fingerprint of the checkpoint
    at `model_path`, recorded as the checkpoint epoch 0's rollouts started from.

    A run that was killed resumes from its last complete epoch when called again with the same
    settings, checkpoint and prompts: weights, optimizer, scheduler and RNG states from TRL's
    checkpoint, the sampler (mu, history, RNG) and the rows so far from the state beside it
    (a reward-based sampler's per-prompt rewards replayed from the rollout rows), so the
    remaining epochs select the same prompts as an uninterrupted run. Resume points live in
    `layout.run_resume(run.name)` until the run finishes.
    """
    from transformers import AutoModelForCausalLM

    from gainrl_ops.scoring.models import load_tokenizer

    resume_dir = layout.run_resume(run.name)
    pass_rates = ranked[PASS_RATE].cast(pl.Float64).fill_null(float("nan")).to_numpy() if PASS_RATE in ranked.columns else None
    key = resume_key(run, model_path, ranked["id"].to_list(), None if pass_rates is None else pass_rates.tolist())
    sampler = run.make_sampler(ranked.height, pass_rates)
    torch.manual_seed(run.seed)
    tokenizer = load_tokenizer(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    reward = CorrectnessReward()
    angles = RolloutAngles()
    problems = ranked["problem"].to_list()
    positions = {prompt_id: rank for rank, prompt_id in enumerate(ranked["id"].to_list())}
    feedback = CurriculumFeedback(
        sampler, reward, angles,
        prompt_score=(lambda m, ranks: mean_prompt_score(m, tokenizer, prompt, [problems[r] for r in ranks], run.inter_weight))
        if run.uses_feedback else None,
        from_prompts=run.feedback == "prompt",
        positions=positions,
    )
    checkpoints = StoreCheckpoints(run, lambda m, epoch: save_checkpoint(m, tokenizer, epoch))
    evaluation = HeldOutEvaluation(lambda m: evaluate(m, tokenizer)) if evaluate else None
    recorder = EpochRecorder(run, ranked, sampler, feedback, checkpoints, evaluation, start_checkpoint=base_checkpoint)
    resume = ResumePoints(key, sampler, recorder, positions)
    parts = [feedback, checkpoints, *([evaluation] if evaluation else []), recorder, resume]
    # TRL still calls transformers' gradient-checkpointing names that v5 deprecates: several
    # FutureWarnings per run about TRL's code, nothing a user of this function can act on.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`\w*gradient_checkpointing\w*` is deprecated", category=FutureWarning)
        trainer = CurriculumGRPOTrainer(
            model=model,
            processing_class=tokenizer,
            reward_funcs=[reward],
            args=grpo_config(run, resume_dir),
            train_dataset=grpo_dataset(ranked, tokenizer, prompt),
            callbacks=[*parts, *callbacks],
            epoch_sampler=sampler,
            subset_size=run.subset_size,
            rollout_angles=angles if run.uses_feedback else None,
        )
        # TRL's progress callback writes every step's log dict; EpochRecorder logs one line per epoch.
        trainer.remove_callback(ProgressCallback)
        trainer.remove_callback(PrinterCallback)
        point = _resume_point(resume_dir, key)
        if point is not None:
            resume.restore(point.state)
            log.info("run %s: resuming after epoch %d of %d from %s", run.name, point.epochs_done, run.epochs, point.folder)
        trainer.train(resume_from_checkpoint=str(point.folder) if point else None)
    epochs, selections, rollouts = recorder.tables()
    if is_main_process():
        write_parquet_atomic(epochs.to_arrow(), layout.epochs(run.name))
        write_parquet_atomic(selections.to_arrow(), layout.selections(run.name))
        write_parquet_atomic(rollouts.to_arrow(), layout.rollouts(run.name))
        write_text_atomic(json.dumps({"run": asdict(run), "sampler": sampler.state_dict()}, default=float), layout.run_state(run.name))
        shutil.rmtree(resume_dir, ignore_errors=True)  # finished: nothing to resume
    wait_for_everyone()
    return TrainingResult(epochs, selections, rollouts, [p for p in epochs["checkpoint_path"].to_list() if p], layout.run_dir(run.name))


def _resume_point(directory: Path, key: str) -> ResumePoint | None:
    """The main process clears what cannot be resumed from; then every process reads the same point."""
    point = prepare_resume(directory, key) if is_main_process() else None
    wait_for_everyone()
    return point if is_main_process() else find_resume_point(directory, key)


def save_to_store(
    store: LocalCheckpointStore, name: str
) -> Callable[[PreTrainedModel, PreTrainedTokenizerBase, int], Path]:
    """A `save_checkpoint` that writes the store entry `<name>-epoch<k>` atomically (a temporary
    folder renamed into place), so the store never shows half a checkpoint."""

    def save(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, epoch: int) -> Path:
        target = store.entry(f"{name}-epoch{epoch + 1:03d}")
        with atomic_directory(target) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        return target

    return save


def train_from_store(
    run: TrainingRunConfig,
    store: LocalCheckpointStore,
    base: CheckpointRecord,
    ranked: pl.DataFrame,
    prompt: PromptConfig,
    layout: Layout,
    held_out: list[tuple[str, str]],
) -> tuple[TrainingResult, Path]:
    """Train `run` from the store's `base` checkpoint on the `ranked` prompts, register every
    saved checkpoint in the store as a child of `base`, record held-out accuracy after each
    epoch, and plot the curves. Returns the result and the curve PNG."""
    save = save_to_store(store, run.name)

    def save_and_register(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, epoch: int) -> Path:
        path = save(model, tokenizer, epoch)
        store.register(str(path), name=path.name, source=f"training run {run.name}, epoch {epoch + 1}", parent=base.fingerprint)
        return path

    result = train_run(
        run, base.path, ranked, prompt, layout, save_and_register,
        evaluate=lambda model, tokenizer: greedy_accuracy(model, tokenizer, held_out, prompt),
        base_checkpoint=base.fingerprint,
    )
    curve = layout.run_curve(run.name)
    if is_main_process():
        plot_runs(result.epochs, curve, title=run.name)
    wait_for_everyone()
    return result, curve
