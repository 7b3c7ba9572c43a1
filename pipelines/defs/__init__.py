"""One folder per domain, each with its assets, checks and automation: curriculum, training, diagnostics, difficulty."""
