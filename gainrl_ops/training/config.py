"""Named training runs: the configuration of each `training_run` partition."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from gainrl_ops.scoring.config import DEFAULT_INTER_WEIGHT
from gainrl_ops.training.learnability import LearnabilitySampler
from gainrl_ops.training.pools import PoolSampler
from gainrl_ops.training.sampling import (
    EpochSampler,
    GainRLConfig,
    GainRLSampler,
    UniformSampler,
)

SAMPLERS = ("gainrl", "uniform", "length", "difficulty", "learnability", "pool")
# The samplers GAIN-RL's controller moves with the feedback angle; the others ignore it.
WINDOW_SAMPLERS = ("gainrl", "length", "difficulty")
# The column of the ranked prompts that carries the base checkpoint's pass rates (learnability).
PASS_RATE = "pass_rate"
FEEDBACK = ("rollout", "prompt")
# TRL GRPOConfig fields we set unless a run overrides them; any other GRPOConfig field may be
# given too. On CPU, bf16 and vLLM stay off whatever is given (see trainer.grpo_config).
GRPO_DEFAULTS: dict[str, Any] = {
    "num_generations": 8,
    "per_device_train_batch_size": 32,
    "learning_rate": 5e-5,
    "temperature": 1.0,
    "max_completion_length": 48,
    "beta": 0.0,
}
_NAME = re.compile(r"[A-Za-z0-9._-]+")


@dataclass(frozen=True)
class TrainingRunConfig:
    """A named training run.

    Curriculum:
        sampler: "gainrl" (Gaussian window over the angle ranking, moved by feedback),
            "uniform" (the baseline), or the same window and controller over a control order
            read from the catalog, no model run: "length" (shortest question first, in
            tokens) or "difficulty" (easiest first; the dataset needs a difficulty column);
            or a reward-based sampler over the same prompts, moved by each prompt's mean group
            reward (the `rollouts` records): "learnability" (LILO: in proportion to p(1 - p)
            of the pass rate p, starting from the base checkpoint's pass rates) or "pool"
            (prime-rl's difficulty pools, with replacement).
        feedback: the angle the controller gets after an epoch: "rollout" (mean pairwise
            cosine of the last MLP's input over the epoch's rollout sequences, in [-1, 1],
            as GAIN-RL does) or "prompt" (mean angle score of the epoch's prompts; it is
            c_intra + inter_weight * c_inter, about 4-8, so tanh saturates). Both are recorded.
        subset_size: prompts per epoch.
        n_frac, sigma_frac, adj_max_frac: GAIN-RL's n, sigma and adj_max as fractions of
            the dataset size (published: 500, 1000, 1000 of ~7.5k prompts).
        alpha, beta: GAIN-RL's controller gains.
    GRPO:
        grpo: `trl.GRPOConfig` fields by their own names, over `GRPO_DEFAULTS`
            (e.g. {learning_rate: 1e-5, beta: 0.04, max_completion_length: 256}).
    Run:
        epochs, seed, checkpoint_every (epochs; the last epoch is always saved),
        inter_weight: w of the prompt angle score recorded for each epoch (`prompt_score`).
    Processes:
        num_processes: data-parallel processes (e.g. GPUs), started with `accelerate launch
            --num_processes N`; 1 trains in the calling process.
        accelerate_config: an `accelerate config` file for the launch (e.g. DeepSpeed, or one
            node of several); empty: accelerate's defaults.
    """

    name: str
    sampler: Literal["gainrl", "uniform", "length", "difficulty", "learnability", "pool"] = "gainrl"
    feedback: Literal["rollout", "prompt"] = "rollout"
    seed: int = 0
    epochs: int = 3
    subset_size: int = 32
    n_frac: float = 500 / 7500
    sigma_frac: float = 1000 / 7500
    adj_max_frac: float = 1000 / 7500
    alpha: float = 2.0
    beta: float = 0.5
    grpo: dict[str, Any] = field(default_factory=dict)
    checkpoint_every: int = 1
    inter_weight: float = DEFAULT_INTER_WEIGHT
    num_processes: int = 1
    accelerate_config: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "grpo", {**GRPO_DEFAULTS, **self.grpo})
        problems = [*self._run_problems(), *self._batch_problems()]
        if problems:
            raise ValueError(f"training run {self.name!r}: {'; '.join(problems)}")

    def _run_problems(self) -> list[str]:
        problems = []
        if not _NAME.fullmatch(self.name):
            problems.append("the name must match [A-Za-z0-9._-]+")
        if self.sampler not in SAMPLERS:
            problems.append(f"sampler {self.sampler!r} is not one of {SAMPLERS}")
        if self.feedback not in FEEDBACK:
            problems.append(f"feedback {self.feedback!r} is not one of {FEEDBACK}")
        for name in ("epochs", "subset_size", "checkpoint_every", "num_processes"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1, not {getattr(self, name)}")
        for name in ("n_frac", "sigma_frac"):
            if not 0 < getattr(self, name) <= 1:
                problems.append(f"{name} must lie in (0, 1], not {getattr(self, name)}")
        if not 0 <= self.adj_max_frac <= 1:
            problems.append(f"adj_max_frac must lie in [0, 1], not {self.adj_max_frac}")
        if not 0 <= self.beta <= 1:
            problems.append(f"beta is an accuracy threshold in [0, 1], not {self.beta}")
        return problems

    def _batch_problems(self) -> list[str]:
        """TRL generates `per_device_train_batch_size` completions per step on each process,
        `num_generations` per prompt, and an epoch must be whole steps of whole groups."""
        generations, batch = self.grpo["num_generations"], self.grpo["per_device_train_batch_size"]
        if generations < 2 or batch % generations:
            return [f"grpo.per_device_train_batch_size {batch} must be a multiple of grpo.num_generations {generations} (at least 2)"]
        per_step = batch * max(self.num_processes, 1) // generations
        if self.subset_size % per_step:
            return [f"subset_size {self.subset_size} must be a multiple of the {per_step} prompts per step "
                    f"(per_device_train_batch_size {batch} x num_processes {self.num_processes} / num_generations {generations})"]
        return []

    @property
    def ordering(self) -> str:
        """What the sampler's ranks index: "angle" (the base checkpoint's curriculum; uniform
        ignores the order, and so do learnability and pool), "length" or "difficulty"
        (`curriculum.ranking.ordered_prompts`)."""
        return self.sampler if self.sampler in ("length", "difficulty") else "angle"

    @property
    def uses_feedback(self) -> bool:
        """Whether the sampler moves with the epoch's feedback angle (GAIN-RL's window, over any
        order), so that the trainer measures it; every sampler gets the rollout rewards."""
        return self.sampler in WINDOW_SAMPLERS

    def make_sampler(self, n_prompts: int, pass_rates: np.ndarray | None = None) -> EpochSampler:
        """The run's sampler over `n_prompts` ranks. `pass_rates` (aligned with the ranks, NaN
        where unknown) is the base checkpoint's pass rate of each prompt, which the
        learnability sampler starts from and needs."""
        if self.sampler == "uniform":
            return UniformSampler(self.subset_size, n_prompts, seed=self.seed)
        if self.sampler == "pool":
            return PoolSampler(self.subset_size, n_prompts, seed=self.seed)
        if self.sampler == "learnability":
            if pass_rates is None:
                raise ValueError(
                    f"training run {self.name!r}: the learnability sampler needs the base checkpoint's pass rates; "
                    "materialize `pass_rates` for the base checkpoint first (job estimate_difficulty)"
                )
            return LearnabilitySampler(pass_rates, self.subset_size, seed=self.seed)
        config = GainRLConfig.scale_free(
            n_prompts, n=self.n_frac, sigma=self.sigma_frac, adj_max=self.adj_max_frac,
            alpha=self.alpha, beta=self.beta, subset_size=self.subset_size,
        )
        return GainRLSampler(config, n_prompts, seed=self.seed)


def load_run_configs(path: Path) -> dict[str, TrainingRunConfig]:
    """Run configurations from a YAML mapping of run name to fields; unknown fields are errors."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    known = {f.name for f in fields(TrainingRunConfig)} - {"name"}
    runs = {}
    for name, values in raw.items():
        unknown = set(values or {}) - known
        if unknown:
            raise ValueError(f"{path}: run {name!r} has unknown fields {sorted(unknown)}; known: {sorted(known)}")
        try:
            runs[str(name)] = TrainingRunConfig(name=str(name), **(values or {}))
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: {error}") from None
    return runs
