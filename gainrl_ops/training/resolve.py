"""Which model a command means: a path or hub id as given, or the embedded default, built once.

Light on purpose: scoring a model given by path or id imports this, and never the builder
(torch, transformers, the tokenizer trainers, training), which loads only for "embedded".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gainrl_ops.core.layout import Layout
from gainrl_ops.data.arithmetic import EMBEDDED

if TYPE_CHECKING:
    from gainrl_ops.training.embedded import EmbeddedModelConfig


def resolve_model(name_or_path: str, layout: Layout, embedded: EmbeddedModelConfig | None = None) -> str:
    """A loadable model id or path; "embedded" builds (once, cached) the tiny default model."""
    if name_or_path != EMBEDDED:
        return name_or_path
    from gainrl_ops.training.embedded import embedded_model_path

    return str(embedded_model_path(embedded, root=layout.models_dir))
