"""Where each artifact lives under the storage root: the only module that knows a path.

The tree, one line per kind (`{name}` is a placeholder; folders starting with "." or "_"
are staging or temporary and never read as published):

    <root>/
      gainrl.duckdb                                          SQL catalog (views only, no rows)
      datasets/{dataset}/prompts.parquet                     canonical prompts
      datasets/{dataset}/rejects.parquet                     rows dropped while loading, with the reason
      datasets/{dataset}/generated-{digest}.jsonl            the embedded dataset, generated once
      datasets/{dataset}/shards/current.json                 which shard set tokenized_shards made last
      datasets/{dataset}/shards/{prompt_fingerprint}/shard-{index}.parquet, manifest.json
      scores/{dataset}/{prompt_fingerprint}/{checkpoint}/part-{index}.parquet, summary.json
      scores/{dataset}/{prompt_fingerprint}/_staging-{checkpoint}/   a scoring run in progress
      curriculum/{dataset}/{prompt_fingerprint}/{checkpoint}.parquet ranking snapshot
      reports/{dataset}/{prompt_fingerprint}/{checkpoint}/{plot}.png curriculum report plots
      runs/{run}/epochs.parquet, selections.parquet, state.json, curve.png
      evaluations/{dataset}/{checkpoint}.parquet             held-out answers of a checkpoint
      diagnostics/{dataset}/{checkpoint}.parquet, .json, .png signal diagnostics
      checkpoints/{name}/gainrl_checkpoint.json (+ weights)  the checkpoint store
      models/{build}/                                        embedded model builds
      dagster/                                               DAGSTER_HOME under `make`
      screenshots/                                           the browser test's screenshots

Each kind is a `Template`; the catalog builds its globs and file-name regexes from the same
templates, so a folder moves by editing this file alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from gainrl_ops.core.fingerprint import DIGEST_CHARS
from gainrl_ops.core.storage import storage_root

_PUBLISHED = "[!._]*"  # a name not starting with "." or "_" (staging and temporary files do)
_FIELD = re.compile(r"\{(\w+)\}")
# How a field is matched in a glob; any other field matches a published name.
_GLOBS = {"checkpoint": "[0-9a-f]" * DIGEST_CHARS, "index": "[0-9]*", "rest": "**"}
# How a field is written: shard and part files sort by their zero-padded index.
_FORMATS = {"index": "{:05d}"}


@dataclass(frozen=True)
class Template:
    """A kind of artifact: a path under the root with `{field}` placeholders."""

    pattern: str

    def fields(self) -> list[str]:
        return _FIELD.findall(self.pattern)

    def relative(self, **values: object) -> str:
        return _FIELD.sub(lambda m: _FORMATS.get(m.group(1), "{}").format(values[m.group(1)]), self.pattern)

    def name(self, **values: object) -> str:
        """The file name alone (the last path component), for writers handed a folder."""
        return Template(self.pattern.rsplit("/", 1)[-1]).relative(**values)

    def name_glob(self) -> str:
        """Glob over the file names alone, inside one artifact's folder."""
        return Template(self.pattern.rsplit("/", 1)[-1]).glob()

    def glob(self) -> str:
        """Glob over every published artifact of this kind, relative to the root."""
        return _FIELD.sub(lambda m: _GLOBS.get(m.group(1), _PUBLISHED), self.pattern)

    def regex(self, capture: str | None = None) -> str:
        """Regex over a file's full path that matches this kind; group 1 is `capture`."""
        parts = _FIELD.split(self.pattern)
        out = []
        for i, part in enumerate(parts):
            if i % 2 == 0:
                out.append(re.escape(part))
            elif part == "rest":
                out.append(".+")
            else:
                out.append("([^/]+)" if part == capture else "[^/]+")
        return "/" + "".join(out) + "$"


CATALOG = Template("gainrl.duckdb")
GENERATED = Template("datasets/{dataset}/generated-{digest}.jsonl")
PROMPTS = Template("datasets/{dataset}/prompts.parquet")
REJECTS = Template("datasets/{dataset}/rejects.parquet")
CURRENT_SHARDS = Template("datasets/{dataset}/shards/current.json")
SHARD = Template("datasets/{dataset}/shards/{prompt_fingerprint}/shard-{index}.parquet")
SHARD_MANIFEST = Template("datasets/{dataset}/shards/{prompt_fingerprint}/manifest.json")
SCORE_PART = Template("scores/{dataset}/{prompt_fingerprint}/{checkpoint}/part-{index}.parquet")
SCORE_SUMMARY = Template("scores/{dataset}/{prompt_fingerprint}/{checkpoint}/summary.json")
SCORE_STAGING = Template("scores/{dataset}/{prompt_fingerprint}/_staging-{checkpoint}")
RANKING = Template("curriculum/{dataset}/{prompt_fingerprint}/{checkpoint}.parquet")
REPORT_PLOT = Template("reports/{dataset}/{prompt_fingerprint}/{checkpoint}/{plot}.png")
EPOCHS = Template("runs/{run}/epochs.parquet")
SELECTIONS = Template("runs/{run}/selections.parquet")
RUN_STATE = Template("runs/{run}/state.json")
RUN_CURVE = Template("runs/{run}/curve.png")
EVALUATION = Template("evaluations/{dataset}/{checkpoint}.parquet")
DIAGNOSTICS = Template("diagnostics/{dataset}/{checkpoint}.parquet")
DIAGNOSTICS_SUMMARY = Template("diagnostics/{dataset}/{checkpoint}.json")
DIAGNOSTICS_PLOT = Template("diagnostics/{dataset}/{checkpoint}.png")
CHECKPOINT_RECORD = Template("checkpoints/{name}/gainrl_checkpoint.json")
CHECKPOINT_FILE = Template("checkpoints/{name}/{rest}")
MODEL_FILE = Template("models/{build}/{rest}")
DAGSTER_FILE = Template("dagster/{rest}")
SCREENSHOT = Template("screenshots/{rest}")

TREE: tuple[Template, ...] = (
    CATALOG, GENERATED, PROMPTS, REJECTS, CURRENT_SHARDS, SHARD, SHARD_MANIFEST, SCORE_PART, SCORE_SUMMARY,
    RANKING, REPORT_PLOT, EPOCHS, SELECTIONS, RUN_STATE, RUN_CURVE, EVALUATION, DIAGNOSTICS,
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

    def glob(self, template: Template) -> str:
        return str(self.root / template.glob())

    def kind_of(self, path: Path) -> Template | None:
        """The template a file under the root belongs to, if any."""
        text = "/" + Path(path).resolve().relative_to(self.root.resolve()).as_posix()
        return next((t for t in TREE if re.search("^" + t.regex(), text)), None)

    # datasets
    def dataset_dir(self, dataset: str) -> Path:
        return self.prompts(dataset).parent

    def prompts(self, dataset: str) -> Path:
        return self.path(PROMPTS, dataset=dataset)

    def rejects(self, dataset: str) -> Path:
        return self.path(REJECTS, dataset=dataset)

    def generated(self, dataset: str, digest: str) -> Path:
        return self.path(GENERATED, dataset=dataset, digest=digest)

    def current_shards(self, dataset: str) -> Path:
        return self.path(CURRENT_SHARDS, dataset=dataset)

    def shards(self, dataset: str, prompt_fingerprint: str) -> Path:
        return self.path(SHARD_MANIFEST, dataset=dataset, prompt_fingerprint=prompt_fingerprint).parent

    # scores, rankings, reports
    def scores(self, dataset: str, prompt_fingerprint: str, checkpoint: str) -> Path:
        return self.path(SCORE_SUMMARY, dataset=dataset, prompt_fingerprint=prompt_fingerprint, checkpoint=checkpoint).parent

    def scores_staging(self, dataset: str, prompt_fingerprint: str, checkpoint: str) -> Path:
        return self.path(SCORE_STAGING, dataset=dataset, prompt_fingerprint=prompt_fingerprint, checkpoint=checkpoint)

    def ranking(self, dataset: str, prompt_fingerprint: str, checkpoint: str) -> Path:
        return self.path(RANKING, dataset=dataset, prompt_fingerprint=prompt_fingerprint, checkpoint=checkpoint)

    def report_dir(self, dataset: str, prompt_fingerprint: str, checkpoint: str) -> Path:
        return self.path(REPORT_PLOT, dataset=dataset, prompt_fingerprint=prompt_fingerprint, checkpoint=checkpoint, plot="x").parent

    # training, evaluation, diagnostics
    def run_dir(self, run: str) -> Path:
        return self.path(EPOCHS, run=run).parent

    def epochs(self, run: str) -> Path:
        return self.path(EPOCHS, run=run)

    def selections(self, run: str) -> Path:
        return self.path(SELECTIONS, run=run)

    def run_state(self, run: str) -> Path:
        return self.path(RUN_STATE, run=run)

    def run_curve(self, run: str) -> Path:
        return self.path(RUN_CURVE, run=run)

    def evaluation(self, dataset: str, checkpoint: str) -> Path:
        return self.path(EVALUATION, dataset=dataset, checkpoint=checkpoint)

    def diagnostics_stem(self, dataset: str, checkpoint: str) -> Path:
        """Signal diagnostics of a checkpoint: `<stem>.parquet`, `.json` and `.png`."""
        return self.path(DIAGNOSTICS, dataset=dataset, checkpoint=checkpoint).with_suffix("")

    # stores and services
    @property
    def catalog(self) -> Path:
        return self.path(CATALOG)

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
