"""Where each artifact lives under the storage root: the only module that knows a path.

The tree, one line per kind (`{name}` is a placeholder; folders starting with "." or "_"
are staging or temporary and never read as published):

    <root>/
      gainrl.duckdb                                          SQL catalog (views only, no rows)
      gainrl.duckdb.state.json                               what the last catalog refresh read
      gainrl.duckdb.status.json                              `gainrl status`'s catalog rows, for that refresh
      datasets/{dataset}/current.json                        the served label: which content version the name means now
      datasets/{dataset}/loaded.json                         the loaded label: which version raw_dataset (or gainrl score) loaded last
      datasets/{dataset}/generated-{digest}.jsonl            the embedded dataset, generated once
      datasets/{dataset}/{version}/prompts.parquet           canonical prompts of one content version
      datasets/{dataset}/{version}/rejects.parquet           rows dropped while loading, with the reason
      datasets/{dataset}/{version}/provenance.json           where the version came from: file, load time, rows read
      datasets/{dataset}/{version}/shards/current.json       which shard set tokenized_shards made last
      datasets/{dataset}/{version}/shards/{prompt_fingerprint}/shard-{index}.parquet, manifest.json
      scores/dataset={dataset}/version={version}/prompts={prompt_fingerprint}/checkpoint={checkpoint}/
          scores.parquet                                     all scores of a checkpoint, ranked, what SQL reads
          parts/part-{index}.parquet, summary.json           one part per shard (resuming reuses them)
      scores/dataset={dataset}/version={version}/prompts={prompt_fingerprint}/_staging-{checkpoint}/  a run in progress
      pass_rates/dataset={dataset}/version={version}/prompts={prompt_fingerprint}/checkpoint={checkpoint}/
          pass_rates.parquet, summary.json, pass_rates.png   sampled pass rates of a checkpoint, ranked
      curriculum/{dataset}/{version}/{prompt_fingerprint}/{checkpoint}.parquet ranking snapshot
      reports/{dataset}/{version}/{prompt_fingerprint}/{checkpoint}/{plot}.png curriculum report plots
      exports/{dataset}/{version}/{checkpoint}/curriculum.{verl.parquet,jsonl,pt}, hf/   for other trainers
      rankings/{dataset}/{version}/{name}.parquet            rankings imported from elsewhere (.pt)
      runs/{run}/epochs.parquet, selections.parquet, rollouts.parquet, state.json, curve.png
      runs/{run}/resume/checkpoint-{step}/                   TRL checkpoint + gainrl_resume.json while a run is unfinished
      runs/{run}/launch/                                     a multi-process run's inputs and its `accelerate launch` log
      evaluations/{dataset}/{version}/{checkpoint}.parquet   held-out answers of a checkpoint
      diagnostics/{dataset}/{version}/{checkpoint}.parquet, .json, .png   signal diagnostics
      checkpoints/{name}/gainrl_checkpoint.json (+ weights)  the checkpoint store
      models/{build}/                                        embedded model builds
      dagster/                                               DAGSTER_HOME under `make`
      screenshots/                                           the browser test's screenshots

`{version}` is the digest of a dataset's content (ids, problems, answers), so an edited file
gets new shards, scores and rankings instead of mixing with the old ones, which stay
addressable under their own version. Every other placeholder must be a plain name
(`[A-Za-z0-9][A-Za-z0-9._-]*`), so no value can reach outside the root.

Each kind is a `Template`; the catalog builds its globs and file-name regexes from the same
templates, so a folder moves by editing this file alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from gainrl_ops.core.fingerprint import DIGEST_CHARS
from gainrl_ops.core.keys import ScoresKey
from gainrl_ops.core.storage import storage_root

_PUBLISHED = "[!._]*"  # a name not starting with "." or "_" (staging and temporary files do)
_FIELD = re.compile(r"\{(\w+)\}")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# How a field is matched in a glob; any other field matches a published name.
_GLOBS = {"checkpoint": "[0-9a-f]" * DIGEST_CHARS, "version": "[0-9a-f]" * DIGEST_CHARS, "index": "[0-9]*", "rest": "**"}
# How a field is written: shard and part files sort by their zero-padded index.
_FORMATS = {"index": "{:05d}"}


@dataclass(frozen=True)
class Template:
    """A kind of artifact: a path under the root with `{field}` placeholders."""

    pattern: str

    def fields(self) -> list[str]:
        return _FIELD.findall(self.pattern)

    def relative(self, **values: object) -> str:
        return _FIELD.sub(lambda m: _value(m.group(1), values[m.group(1)]), self.pattern)

    def name(self, **values: object) -> str:
        """The file name alone (the last path component), for writers handed a folder."""
        return Template(self.pattern.rsplit("/", 1)[-1]).relative(**values)

    def inside(self, folder: Template) -> Template:
        """This template relative to the folder of `folder` (e.g. a part inside a scores folder)."""
        prefix = folder.pattern.rsplit("/", 1)[0] + "/"
        if not self.pattern.startswith(prefix):
            raise ValueError(f"{self.pattern} is not inside {prefix}")
        return Template(self.pattern[len(prefix):])

    def name_glob(self) -> str:
        """Glob over the file names alone, inside one artifact's folder."""
        return Template(self.pattern.rsplit("/", 1)[-1]).glob()

    def glob(self, **values: object) -> str:
        """Glob over every published artifact of this kind, relative to the root; fields named
        in `values` are fixed to them."""
        return _FIELD.sub(
            lambda m: glob_escape(_value(m.group(1), values[m.group(1)])) if m.group(1) in values else _GLOBS.get(m.group(1), _PUBLISHED),
            self.pattern,
        )

    def regex(self, capture: str | None = None) -> str:
        """Regex over a file's full path that matches this kind; group 1 is `capture`."""
        parts = _FIELD.split(self.pattern)
        out = []
        for i, part in enumerate(parts):
            if i % 2 == 0:
                out.append(re.escape(part))
            elif part == "rest":
                out.append(".+")
            else:  # a published name: staging and temporary names start with "." or "_"
                out.append("([^/._][^/]*)" if part == capture else "[^/._][^/]*")
        return "/" + "".join(out) + "$"


def safe_name(value: str, what: str = "name") -> str:
    """`value` if it is a plain name that stays inside its folder, else a ValueError saying why."""
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise ValueError(f"{what} {value!r} must match [A-Za-z0-9][A-Za-z0-9._-]* (letters, digits, '.', '_', '-'; no path)")
    return value


def _value(field: str, value: object) -> str:
    if field == "rest":
        return str(value)
    if field in _FORMATS:
        return _FORMATS[field].format(value)
    return safe_name(str(value), field)


def glob_escape(path: str) -> str:
    """`path` with glob characters taken literally, for DuckDB's glob (e.g. a root named `a[1]`)."""
    return re.sub(r"[\[\]*?]", lambda m: f"[{m.group()}]", path)


CATALOG = Template("gainrl.duckdb")
CATALOG_STATE = Template("gainrl.duckdb.state.json")
STATUS_CACHE = Template("gainrl.duckdb.status.json")
DATASET_LABEL = Template("datasets/{dataset}/current.json")
LOADED_LABEL = Template("datasets/{dataset}/loaded.json")
PROVENANCE = Template("datasets/{dataset}/{version}/provenance.json")
GENERATED = Template("datasets/{dataset}/generated-{digest}.jsonl")
PROMPTS = Template("datasets/{dataset}/{version}/prompts.parquet")
REJECTS = Template("datasets/{dataset}/{version}/rejects.parquet")
CURRENT_SHARDS = Template("datasets/{dataset}/{version}/shards/current.json")
SHARD = Template("datasets/{dataset}/{version}/shards/{prompt_fingerprint}/shard-{index}.parquet")
SHARD_MANIFEST = Template("datasets/{dataset}/{version}/shards/{prompt_fingerprint}/manifest.json")
# Hive-style folders, so a query that filters on a checkpoint opens that checkpoint's file only.
_SCORES_DIR = "scores/dataset={dataset}/version={version}/prompts={prompt_fingerprint}"
SCORES = Template(_SCORES_DIR + "/checkpoint={checkpoint}/scores.parquet")
SCORE_PART = Template(_SCORES_DIR + "/checkpoint={checkpoint}/parts/part-{index}.parquet")
SCORE_SUMMARY = Template(_SCORES_DIR + "/checkpoint={checkpoint}/summary.json")
SCORE_STAGING = Template(_SCORES_DIR + "/_staging-{checkpoint}")
_PASS_RATES_DIR = "pass_rates/dataset={dataset}/version={version}/prompts={prompt_fingerprint}/checkpoint={checkpoint}"
PASS_RATES = Template(_PASS_RATES_DIR + "/pass_rates.parquet")
PASS_RATES_SUMMARY = Template(_PASS_RATES_DIR + "/summary.json")
PASS_RATES_PLOT = Template(_PASS_RATES_DIR + "/pass_rates.png")
RANKING = Template("curriculum/{dataset}/{version}/{prompt_fingerprint}/{checkpoint}.parquet")
REPORT_PLOT = Template("reports/{dataset}/{version}/{prompt_fingerprint}/{checkpoint}/{plot}.png")
EXPORT_FILE = Template("exports/{dataset}/{version}/{checkpoint}/{rest}")
IMPORTED_RANKING = Template("rankings/{dataset}/{version}/{name}.parquet")
EPOCHS = Template("runs/{run}/epochs.parquet")
SELECTIONS = Template("runs/{run}/selections.parquet")
ROLLOUTS = Template("runs/{run}/rollouts.parquet")
RUN_STATE = Template("runs/{run}/state.json")
RUN_CURVE = Template("runs/{run}/curve.png")
RUN_RESUME = Template("runs/{run}/resume/{rest}")
RUN_LAUNCH = Template("runs/{run}/launch/{rest}")
EVALUATION = Template("evaluations/{dataset}/{version}/{checkpoint}.parquet")
DIAGNOSTICS = Template("diagnostics/{dataset}/{version}/{checkpoint}.parquet")
DIAGNOSTICS_SUMMARY = Template("diagnostics/{dataset}/{version}/{checkpoint}.json")
DIAGNOSTICS_PLOT = Template("diagnostics/{dataset}/{version}/{checkpoint}.png")
CHECKPOINT_RECORD = Template("checkpoints/{name}/gainrl_checkpoint.json")
CHECKPOINT_FILE = Template("checkpoints/{name}/{rest}")
MODEL_FILE = Template("models/{build}/{rest}")
DAGSTER_FILE = Template("dagster/{rest}")
SCREENSHOT = Template("screenshots/{rest}")

TREE: tuple[Template, ...] = (
    CATALOG, CATALOG_STATE, STATUS_CACHE, DATASET_LABEL, LOADED_LABEL, GENERATED, PROMPTS, REJECTS, PROVENANCE, CURRENT_SHARDS, SHARD, SHARD_MANIFEST, SCORES, SCORE_PART, SCORE_SUMMARY,
    PASS_RATES, PASS_RATES_SUMMARY, PASS_RATES_PLOT, RANKING, REPORT_PLOT, EXPORT_FILE, IMPORTED_RANKING, EPOCHS, SELECTIONS, ROLLOUTS, RUN_STATE, RUN_CURVE, RUN_RESUME, RUN_LAUNCH, EVALUATION, DIAGNOSTICS,
    DIAGNOSTICS_SUMMARY, DIAGNOSTICS_PLOT, CHECKPOINT_RECORD, CHECKPOINT_FILE, MODEL_FILE, DAGSTER_FILE, SCREENSHOT,
)


@dataclass(frozen=True)
class Layout:
    """The artifact paths under one storage root (see the module docstring for the tree)."""

    root: Path

    @classmethod
    def default(cls) -> Layout:
        return cls(storage_root())

    def path(self, template: Template, **values: object) -> Path:
        return self.root / template.relative(**values)

    def glob(self, template: Template, **values: object) -> str:
        """Glob over every published artifact of a kind (fields in `values` fixed); the root's
        own characters are literal."""
        return glob_escape(str(self.root)) + "/" + template.glob(**values)

    def kind_of(self, path: Path) -> Template | None:
        """The published kind of a file under the root, if any (staging and temporary files have none)."""
        text = "/" + Path(path).resolve().relative_to(self.root.resolve()).as_posix()
        return next((t for t in TREE if re.search("^" + t.regex(), text)), None)

    # datasets: a name is a label; content lives under its version
    def dataset_label(self, dataset: str) -> Path:
        return self.path(DATASET_LABEL, dataset=dataset)

    def loaded_label(self, dataset: str) -> Path:
        return self.path(LOADED_LABEL, dataset=dataset)

    def provenance(self, dataset: str, version: str) -> Path:
        return self.path(PROVENANCE, dataset=dataset, version=version)

    def generated(self, dataset: str, digest: str) -> Path:
        return self.path(GENERATED, dataset=dataset, digest=digest)

    def prompts(self, dataset: str, version: str) -> Path:
        return self.path(PROMPTS, dataset=dataset, version=version)

    def rejects(self, dataset: str, version: str) -> Path:
        return self.path(REJECTS, dataset=dataset, version=version)

    def current_shards(self, dataset: str, version: str) -> Path:
        return self.path(CURRENT_SHARDS, dataset=dataset, version=version)

    def shards(self, dataset: str, version: str, prompt_fingerprint: str) -> Path:
        return self.path(SHARD_MANIFEST, dataset=dataset, version=version, prompt_fingerprint=prompt_fingerprint).parent

    # scores, rankings, reports: one checkpoint's artifacts, named by its `ScoresKey`
    def scores(self, key: ScoresKey) -> Path:
        return self.path(SCORE_SUMMARY, **key.values()).parent

    def ranked_scores(self, key: ScoresKey) -> Path:
        return self.path(SCORES, **key.values())

    def scores_staging(self, key: ScoresKey) -> Path:
        return self.path(SCORE_STAGING, **key.values())

    def pass_rates(self, key: ScoresKey) -> Path:
        """The published pass rates of a checkpoint (its folder also holds summary.json and the histogram)."""
        return self.path(PASS_RATES, **key.values())

    def ranking(self, key: ScoresKey) -> Path:
        return self.path(RANKING, **key.values())

    def report_dir(self, key: ScoresKey) -> Path:
        return self.path(REPORT_PLOT, **key.values(), plot="x").parent

    def export_dir(self, dataset: str, version: str, checkpoint: str) -> Path:
        return self.path(EXPORT_FILE, dataset=dataset, version=version, checkpoint=checkpoint, rest="x").parent

    def imported_ranking(self, dataset: str, version: str, name: str) -> Path:
        return self.path(IMPORTED_RANKING, dataset=dataset, version=version, name=name)

    # training, evaluation, diagnostics
    def run_dir(self, run: str) -> Path:
        return self.path(EPOCHS, run=run).parent

    def epochs(self, run: str) -> Path:
        return self.path(EPOCHS, run=run)

    def selections(self, run: str) -> Path:
        return self.path(SELECTIONS, run=run)

    def rollouts(self, run: str) -> Path:
        return self.path(ROLLOUTS, run=run)

    def run_state(self, run: str) -> Path:
        return self.path(RUN_STATE, run=run)

    def run_curve(self, run: str) -> Path:
        return self.path(RUN_CURVE, run=run)

    def run_resume(self, run: str) -> Path:
        """TRL's output folder for the run: its per-epoch resume points, removed when the run ends."""
        return self.path(RUN_RESUME, run=run, rest="x").parent

    def run_launch(self, run: str) -> Path:
        """The folder that a multi-process run's processes read their inputs from, and its launch log."""
        return self.path(RUN_LAUNCH, run=run, rest="x").parent

    def evaluation(self, dataset: str, version: str, checkpoint: str) -> Path:
        return self.path(EVALUATION, dataset=dataset, version=version, checkpoint=checkpoint)

    def diagnostics_stem(self, dataset: str, version: str, checkpoint: str) -> Path:
        """Signal diagnostics of a checkpoint: `<stem>.parquet`, `.json` and `.png`."""
        return self.path(DIAGNOSTICS, dataset=dataset, version=version, checkpoint=checkpoint).with_suffix("")

    # stores and services
    @property
    def catalog(self) -> Path:
        return self.path(CATALOG)

    @property
    def catalog_state(self) -> Path:
        return self.path(CATALOG_STATE)

    @property
    def status_cache(self) -> Path:
        return self.path(STATUS_CACHE)

    @property
    def checkpoints_dir(self) -> Path:
        return self.path(CHECKPOINT_RECORD, name="x").parent.parent

    @property
    def models_dir(self) -> Path:
        return self.path(MODEL_FILE, build="x", rest="x").parent.parent

    @property
    def dagster_home(self) -> Path:
        return self.path(DAGSTER_FILE, rest="x").parent

    @property
    def screenshots_dir(self) -> Path:
        return self.path(SCREENSHOT, rest="x").parent
