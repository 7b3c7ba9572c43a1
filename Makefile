# Set-up is part of every target: the virtual environment is created when missing and
# refreshed when pyproject.toml changes.
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export GAINRL_HOME ?= $(CURDIR)/data/.gainrl
export DAGSTER_HOME ?= $(GAINRL_HOME)/dagster

.PHONY: demo test bench bench-scale bench-gpu bench-training ui clean

# pip's own output (and any warnings of the machine's pip configuration) goes to .venv/install.log,
# shown only when the install fails.
INSTALL_LOG := $(VENV)/install.log

$(STAMP): pyproject.toml
	@echo "setting up $(VENV) (torch 2.13.0 CPU build and the pinned stack; pip's log: $(INSTALL_LOG))"
	@test -x $(BIN)/python || python3 -m venv $(VENV)
	@# torch first and exactly: a looser requirement pulls the CUDA build (several GB).
	@{ $(BIN)/pip install -q torch==2.13.0 && $(BIN)/pip install -q -e '.[test]'; } > $(INSTALL_LOG) 2>&1 || { tail -20 $(INSTALL_LOG); exit 1; }
	@# pip compiles what it installs, but not an editable project: where PYTHONDONTWRITEBYTECODE is
	@# set (CI images often do) every command would compile our modules again, 20-40 ms each time.
	@$(BIN)/python -m compileall -q gainrl_ops pipelines >> $(INSTALL_LOG) 2>&1
	@touch $(STAMP)

# Both write $(DAGSTER_HOME)/dagster.yaml once (pipelines/instance.py: telemetry off, no warning).
demo: $(STAMP)
	@$(BIN)/python -m pipelines.demo

ui: $(STAMP)
	$(BIN)/python -m pipelines.instance
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# Debian's Chromium for the browser test (Playwright's own browser download cannot work here).
CHROMIUM := /usr/bin/chromium

$(CHROMIUM):
	-(apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "chromium not installed: the browser test will skip"

# Debian's Redis, the broker of the distributed-scoring test (which skips without it).
REDIS := /usr/bin/redis-server

$(REDIS):
	-(apt-get update -qq && apt-get install -y -qq redis-server >/dev/null) || echo "redis-server not installed: the distributed test will skip"

# The numerics tests run twice: with this CPU's own kernels, then with ATen's portable one, so
# that a result which depends on the kernels (AVX2, AVX-512, ...) fails here, not on a user's machine.
test: $(STAMP) $(CHROMIUM) $(REDIS)
	GAINRL_SCREENSHOT_DIR=$(GAINRL_HOME)/screenshots $(BIN)/pytest -q
	ATEN_CPU_CAPABILITY=default $(BIN)/pytest -q -m numerics -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_scorer.py

# 100k and 1M prompts x 3 checkpoints against the floor (about 15 minutes on 2 cores).
bench-scale: $(STAMP)
	$(BIN)/python benchmarks/bench_scale.py

# On a CUDA GPU (a CUDA build of torch): a Qwen2.5-0.5B-shaped model, 2,000 prompts, gainrl against
# the published one-prompt-per-forward procedure; sized for 4 minutes on one H100. `make test` runs its
# CPU smoke (--smoke) through tests/test_bench_gpu.py.
bench-gpu: $(STAMP)
	$(BIN)/python benchmarks/bench_gpu.py

# One process per core (each on one torch thread, seeds split between them), then one report.
BENCH_TRAINING := $(GAINRL_HOME)/bench-training
bench-training: $(STAMP)
	mkdir -p $(BENCH_TRAINING)
	$(BIN)/python benchmarks/bench_training.py --seeds 0 1 2 3 4 --out $(BENCH_TRAINING)/a.json > $(BENCH_TRAINING)/a.log 2>&1 & a=$$!; \
	$(BIN)/python benchmarks/bench_training.py --seeds 5 6 7 8 9 --out $(BENCH_TRAINING)/b.json; b=$$?; \
	wait $$a || { tail -20 $(BENCH_TRAINING)/a.log; exit 1; }; test $$b -eq 0
	$(BIN)/python benchmarks/bench_training.py --combine $(BENCH_TRAINING)/a.json $(BENCH_TRAINING)/b.json

clean:
	rm -rf data/.gainrl
