"""The column registry: each stored column declared once, with its SQL type, nullability and meaning.

The Arrow schemas the writers use (`arrow_schema`) and the SQL views with their column
comments (`curriculum.catalog`) are both generated from these declarations, so a column
cannot mean one thing on disk and another in SQL. A tuple per artifact gives the order of
its columns in the file; a view lists the same `Column` objects in the order users see.

The two rules that decide stored values live here too, for the scorer that writes ranked
files and for the views that read them: non-finite numbers read as NULL (`finite_sql`), and
the ranking order (`rank_sql`, `percentile_sql`).

No pyarrow at import: `gainrl sql` builds its views without it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

# DuckDB type -> pyarrow factory of the same type.
_ARROW_TYPES = {
    "VARCHAR": "string",
    "DOUBLE": "float64",
    "INTEGER": "int32",
    "BIGINT": "int64",
    "BOOLEAN": "bool_",
}


def ident(name: str) -> str:
    """`name` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def finite_sql(expression: str) -> str:
    """`expression` with NaN and infinities as NULL: DuckDB sorts NaN above every number and
    lets it poison averages.

    Not `isnan`: DuckDB 2.0 folds it to false from Parquet statistics (which leave NaN out)
    when union_by_name reads several files, and prunes row groups on it in filters.
    """
    return f"CASE WHEN isfinite({expression}) THEN {expression} END"


def rank_sql(partition: str = "") -> str:
    """The ranking rule, as a window over rows with `angle_score` and `id`: 1 = highest
    angle_score (train first), ties by id, unscored (NULL) last.

    One sort key, so DuckDB answers `WHERE rank <= k` with a top k per partition instead of
    sorting every row. `partition` is a PARTITION BY clause, or "" for one ranking."""
    return f"row_number() OVER ({partition} ORDER BY (angle_score IS NULL, coalesce(-angle_score, 0), id))"


def percentile_sql(rank: str, n_prompts: str) -> str:
    """rank / n_prompts: near 0 at the top, 1 at the bottom."""
    return f"CAST({rank} AS DOUBLE) / {n_prompts}"


@dataclass(frozen=True)
class Column:
    """A stored column: its DuckDB type, what it means, and whether a writer may leave it null.

    `finite`: non-finite values are stored and read as NULL (`finite_sql`).
    `expr`: SQL that reads it in a view, over a source row and its `filename` (`read_as`);
    None reads the same-named field.
    """

    name: str
    type: str
    doc: str
    nullable: bool = True
    finite: bool = False
    expr: str | None = None

    def read_as(self, expr: str) -> Column:
        """The same column, read in a view by `expr` (e.g. taken from the file's path)."""
        return replace(self, expr=expr)

    def value_sql(self) -> str:
        """The stored value, with the NaN rule applied where it holds."""
        expression = self.expr or ident(self.name)
        return finite_sql(expression) if self.finite else expression

    def select(self) -> str:
        return f"CAST({self.value_sql()} AS {self.type}) AS {ident(self.name)}"

    def null(self) -> str:
        return f"CAST(NULL AS {self.type}) AS {ident(self.name)}"

    def arrow_field(self) -> pa.Field:
        import pyarrow as pa

        if self.type.endswith("[]"):
            kind = pa.list_(getattr(pa, _ARROW_TYPES[self.type[:-2]])())
        else:
            kind = getattr(pa, _ARROW_TYPES[self.type])()
        return pa.field(self.name, kind, nullable=self.nullable)


def arrow_schema(columns: tuple[Column, ...]) -> pa.Schema:
    """The Arrow schema that writers of an artifact with these columns use."""
    import pyarrow as pa

    return pa.schema([column.arrow_field() for column in columns])


# Keys shared by several artifacts.
DATASET = Column("dataset", "VARCHAR", "dataset name (a label for one content version at a time)", nullable=False)
DATASET_VERSION = Column(
    "dataset_version", "VARCHAR", "digest of the dataset content (ids, problems, answers) the row belongs to", nullable=False
)
ID = Column("id", "VARCHAR", "prompt id: digest of the normalised problem text", nullable=False)
PROMPT_FINGERPRINT = Column(
    "prompt_fingerprint", "VARCHAR", "fingerprint of tokenizer + chat template + system prompt", nullable=False
)
CHECKPOINT = Column("checkpoint", "VARCHAR", "content fingerprint of the checkpoint that scored the prompt", nullable=False)
N_TOKENS = Column("n_tokens", "INTEGER", "tokens of the rendered prompt", nullable=False)
TRUNCATED = Column("truncated", "BOOLEAN", "the rendered prompt was cut to the token limit", nullable=False)
DIFFICULTY = Column("difficulty", "DOUBLE", "difficulty or level from the input, if it had one")
PROBLEM = Column("problem", "VARCHAR", "problem text", nullable=False)

# Registered checkpoints (one JSON record each).
CHECKPOINT_RECORD = (
    Column("fingerprint", "VARCHAR", "content fingerprint of the weights and config; scores.checkpoint"),
    Column("name", "VARCHAR", "registered name"),
    Column("path", "VARCHAR", "where the checkpoint is stored"),
    Column("registered_at", "TIMESTAMPTZ", "registration time"),
    Column("source", "VARCHAR", "where it came from (hub id, training run, ...)"),
    Column("parameters", "BIGINT", "number of parameters"),
    Column("parent", "VARCHAR", "fingerprint of the checkpoint it was trained from, if any"),
)

# A dataset's canonical prompts (datasets' CANONICAL_SCHEMA).
PROMPT = (
    ID,
    PROBLEM,
    Column("answer", "VARCHAR", "reference final answer", nullable=False),
    Column("source", "VARCHAR", "origin inside the input data (e.g. verl data_source)", nullable=False),
    DIFFICULTY,
    Column("metadata", "VARCHAR", "other input fields as a JSON object (use json_extract)", nullable=False),
    Column("row", "BIGINT", "row of the prompt in the input file", nullable=False),
)
PROMPT_ROW = PROMPT[-1]

# Input rows dropped while loading a dataset.
REJECT = (
    Column("file", "VARCHAR", "input file"),
    Column("row", "BIGINT", "row (or line) in the input file"),
    Column("field", "VARCHAR", "offending field"),
    Column("reason", "VARCHAR", "why the row was dropped"),
    Column("raw", "VARCHAR", "start of the raw row"),
)

# Tokenized prompts, one shard file per slice of a dataset.
SYSTEM_START = Column("system_start", "INTEGER", "first token of the system prompt", nullable=False)
SYSTEM_END = Column("system_end", "INTEGER", "end (exclusive) of the system prompt", nullable=False)
QUESTION_START = Column("question_start", "INTEGER", "first token of the question", nullable=False)
QUESTION_END = Column("question_end", "INTEGER", "end (exclusive) of the question", nullable=False)
INPUT_IDS = Column("input_ids", "INTEGER[]", "token ids of the rendered prompt", nullable=False)
SHARD = (ID, INPUT_IDS, SYSTEM_START, SYSTEM_END, QUESTION_START, QUESTION_END, N_TOKENS, TRUNCATED)

# Angle scores: one part per shard, then one ranked file per checkpoint.
C_INTRA = Column("c_intra", "DOUBLE", "mean cosine between question tokens (NULL under 2 tokens)", finite=True)
C_INTER = Column("c_inter", "DOUBLE", "mean cosine between question and system tokens", finite=True)
ANGLE_SCORE = Column("angle_score", "DOUBLE", "c_intra + inter_weight * c_inter, as scored", finite=True)
INTER_WEIGHT = Column("inter_weight", "DOUBLE", "w of the stored angle_score", nullable=False)
QUESTION_TOKENS = Column("question_tokens", "INTEGER", "tokens in the question span", nullable=False)
SYSTEM_TOKENS = Column("system_tokens", "INTEGER", "tokens in the system-prompt span", nullable=False)
SCORE = (
    ID,
    C_INTRA,
    C_INTER,
    ANGLE_SCORE,
    INTER_WEIGHT,
    N_TOKENS,
    QUESTION_TOKENS,
    SYSTEM_TOKENS,
    TRUNCATED,
    DATASET,
    DATASET_VERSION,
    CHECKPOINT,
    Column("model", "VARCHAR", "model id or path it was loaded from", nullable=False),
    Column("tokenizer", "VARCHAR", "tokenizer fingerprint", nullable=False),
    PROMPT_FINGERPRINT,
    Column("dtype", "VARCHAR", "dtype of the forward pass", nullable=False),
    Column("code_version", "VARCHAR", "version of the scoring code", nullable=False),
)
RANK = Column(
    "rank", "BIGINT", "1 = highest angle_score within (dataset, version, prompt_fingerprint, checkpoint); ties by id, unscored last"
)
N_PROMPTS = Column("n_prompts", "BIGINT", "prompts ranked in the same (dataset, version, prompt_fingerprint, checkpoint)")
PERCENTILE = Column("percentile", "DOUBLE", "rank / n_prompts: near 0 at the top, 1 at the bottom")
# What the compacted file adds to the parts: `rank_sql`, the prompt count, `percentile_sql`.
RANKED_SCORE = (*SCORE, RANK, N_PROMPTS, PERCENTILE)

# The ranked curriculum: scores joined with their prompts' difficulty and text (a view only).
CURRICULUM = (
    DATASET,
    DATASET_VERSION,
    PROMPT_FINGERPRINT,
    CHECKPOINT,
    RANK,
    N_PROMPTS,
    PERCENTILE,
    ID,
    ANGLE_SCORE,
    C_INTRA,
    C_INTER,
    INTER_WEIGHT,
    N_TOKENS,
    QUESTION_TOKENS,
    SYSTEM_TOKENS,
    TRUNCATED,
    DIFFICULTY,
    PROBLEM,
)

# A ranking imported from elsewhere (gainrl import-ranking).
IMPORTED_RANKING = (
    ID,
    Column("rank", "BIGINT", "1 = first in the imported order, counting only rows that are prompts"),
    PROMPT_ROW,
)
RANKING_LABEL = Column("ranking", "VARCHAR", "the label it was imported under")

# Training runs: one row per epoch, one per selected prompt.
RUN = Column("run", "VARCHAR", "training run name (a training_run partition)")
EPOCH = Column("epoch", "INTEGER", "0-based epoch")
EPOCHS = (
    RUN,
    EPOCH,
    Column(
        "sampler", "VARCHAR",
        "gainrl, uniform, length (shortest question first), difficulty (easiest first), learnability (p(1-p) of the "
        "pass rate) or pool (prime-rl's difficulty pools)",
    ),
    Column("feedback", "VARCHAR", "which angle the controller used: rollout (feedback_angle) or prompt (prompt_score)"),
    Column("mu", "DOUBLE", "centre of the sampling window for this epoch, in ranks from 0 (NULL for uniform, learnability and pool)", finite=True),
    Column("sigma", "DOUBLE", "width of the sampling window, in ranks (NULL for uniform, learnability and pool)", finite=True),
    Column("accuracy", "DOUBLE", "mean correctness of the epoch's rollouts"),
    Column("held_out_accuracy", "DOUBLE", "greedy accuracy on the held-out problems after the epoch, if measured"),
    Column(
        "feedback_angle", "DOUBLE",
        "GAIN-RL's feedback angle, in [-1, 1]: mean pairwise cosine (distinct token pairs, no pads) of the last "
        "MLP's input over each rollout (prompt plus completion, prefilled under the policy that generated it), "
        "averaged over the epoch's rollouts (NULL for uniform, learnability and pool)",
        finite=True,
    ),
    Column(
        "prompt_score", "DOUBLE",
        "mean angle score (c_intra + inter_weight * c_inter, the ranking score) of the epoch's prompts under the "
        "policy after the epoch (NULL for uniform, learnability and pool)",
        finite=True,
    ),
    Column("mu_next", "DOUBLE", "mu after the controller update (NULL for uniform, learnability and pool)", finite=True),
    Column("seconds", "DOUBLE", "wall time of training since its start, feedback included, held-out evaluation excluded"),
    Column("feedback_seconds", "DOUBLE", "seconds of this epoch spent measuring feedback_angle and prompt_score"),
    Column("checkpoint_path", "VARCHAR", "checkpoint saved after the epoch, if any"),
)
SELECTIONS = (
    RUN,
    EPOCH,
    Column(
        "rank", "BIGINT",
        "rank of the prompt in the run's order, 1 first: the angle curriculum (1 = highest angle score) for gainrl "
        "and uniform, fewest question tokens for length, lowest difficulty for difficulty (pool draws with "
        "replacement: a prompt drawn twice has two rows)",
    ),
    ID,
)
ROLLOUTS = (
    RUN,
    EPOCH,
    Column(
        "checkpoint", "VARCHAR",
        "content fingerprint of the checkpoint the epoch started from (the base for epoch 0; NULL when the "
        "previous epoch saved none); the policy moves during the epoch",
    ),
    ID,
    Column("n", "INTEGER", "completions of the prompt in the epoch (num_generations per time it was drawn)", nullable=False),
    Column("mean_reward", "DOUBLE", "mean correctness reward of those completions", nullable=False),
    Column("reward_std", "DOUBLE", "their sample standard deviation (ddof 1, as TRL scales advantages by)", finite=True),
    Column("all_equal", "BOOLEAN", "every reward the same: GRPO's advantages are all 0, the group teaches nothing", nullable=False),
)

# Greedy answers of held-out problems, per checkpoint.
EVALUATION_DATASET = Column("dataset", "VARCHAR", "training dataset the held-out problems exclude")
EVALUATION = (
    CHECKPOINT,
    ID,
    Column("answer", "VARCHAR", "reference answer"),
    Column("completion", "VARCHAR", "greedy completion"),
    Column("predicted", "VARCHAR", "final answer extracted from the completion"),
    Column("correct", "BOOLEAN", "predicted matches the answer"),
)

# Signal diagnostics: a sample of scored prompts with their gradient norms.
MEASURED_CHECKPOINT = Column("checkpoint", "VARCHAR", "content fingerprint of the checkpoint measured")
DIAGNOSTIC = (
    ID,
    RANK,
    ANGLE_SCORE,
    C_INTRA,
    C_INTER,
    N_TOKENS,
    DIFFICULTY,
    Column("grad_norm", "DOUBLE", "L2 norm of the gradient of the loss named by gradient_source"),
    Column(
        "gradient_source", "VARCHAR",
        "grpo (GRPO loss on sampled completions) or reference_nll (every completion got the same reward: NLL of the "
        "reference solution)",
    ),
    Column("loss", "DOUBLE", "value of that loss"),
    Column("reward_mean", "DOUBLE", "mean reward of the sampled completions"),
    Column("reward_std", "DOUBLE", "sample std of their rewards"),
    Column("completion_tokens", "DOUBLE", "mean tokens per sampled completion"),
    Column("reference_tokens", "BIGINT", "tokens of the reference solution (reference_nll rows)"),
)

# Pass rates: k sampled completions per prompt under one checkpoint, scored by the training reward.
_SCORED = {column.name: column for column in SCORE}
PASS_RATE = Column(
    "pass_rate", "DOUBLE", "fraction of the k sampled completions whose final answer is correct (the training reward); higher = easier",
    nullable=False,
)
LEARNABILITY = Column("learnability", "DOUBLE", "pass_rate * (1 - pass_rate): 0 for prompts always or never solved, 0.25 at 0.5", nullable=False)
PASS_RATES = (
    ID,
    PASS_RATE,
    LEARNABILITY,
    Column("n_correct", "INTEGER", "correct completions among the k", nullable=False),
    Column("k", "INTEGER", "completions sampled for the prompt", nullable=False),
    Column("completion_tokens", "BIGINT", "tokens generated over the k completions, each up to and including its end token", nullable=False),
    Column(
        "generation_seconds", "DOUBLE",
        "wall seconds of generation spent on the prompt's completions (each generate call's time shared evenly among its rows)",
        nullable=False,
    ),
    Column("temperature", "DOUBLE", "sampling temperature (no top-k, no top-p)", nullable=False),
    Column("max_new_tokens", "INTEGER", "completion length limit", nullable=False),
    Column("seed", "BIGINT", "seed of the prompt sample and of every completion's tokens", nullable=False),
    Column("sample", "BIGINT", "prompts asked for (NULL: every prompt of the dataset version)"),
    N_TOKENS,
    TRUNCATED,
    DATASET,
    DATASET_VERSION,
    Column("checkpoint", "VARCHAR", "content fingerprint of the checkpoint that generated the completions", nullable=False),
    _SCORED["model"],
    _SCORED["tokenizer"],
    PROMPT_FINGERPRINT,
    Column("dtype", "VARCHAR", "dtype of generation", nullable=False),
    Column("code_version", "VARCHAR", "version of the pass-rate code (sampling and reward)", nullable=False),
)
PASS_RATE_RANK = Column(
    "pass_rate_rank", "BIGINT",
    "1 = highest pass_rate (easiest first, as angle rank 1 is the highest angle score) within (dataset, version, "
    "prompt_fingerprint, checkpoint); ties by id",
)
LEARNABILITY_RANK = Column(
    "learnability_rank", "BIGINT",
    "1 = highest learnability (pass rate nearest 0.5) within (dataset, version, prompt_fingerprint, checkpoint); ties by id",
)
PASS_RATE_PROMPTS = Column("n_prompts", "BIGINT", "prompts with a pass rate in the same (dataset, version, prompt_fingerprint, checkpoint)")
# What the published file adds to the estimate: both ranks and the prompt count, stored so no view ranks.
RANKED_PASS_RATES = (*PASS_RATES, PASS_RATE_RANK, LEARNABILITY_RANK, PASS_RATE_PROMPTS)
