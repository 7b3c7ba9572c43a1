"""The diagnostics job: run on demand, since it samples rollouts (minutes for a large model)."""

import dagster as dg

diagnose_job = dg.define_asset_job(
    "diagnose_checkpoint",
    selection=dg.AssetSelection.assets("signal_diagnostics"),
    description="Check on a sample of prompts that the checkpoint's angle scores predict gradient norms beyond prompt length.",
)
