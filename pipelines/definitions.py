"""The Definitions that `dagster dev -w workspace.yaml` serves: every domain, and the resources."""

import dagster as dg

from .defs import curriculum, diagnostics, training
from .resources import default_resources

defs = dg.Definitions.merge(curriculum.defs, training.defs, diagnostics.defs, dg.Definitions(resources=default_resources()))
