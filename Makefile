# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MLFLOW_DISABLE_TELEMETRY := true
export SPARK_LOCAL_IP := 127.0.0.1
export MASTER_ADDR := 127.0.0.1
export PYSPARK_PYTHON := $(abspath $(PY))
export PYSPARK_DRIVER_PYTHON := $(abspath $(PY))
export TOKENIZERS_PARALLELISM := false

RUN_DIR ?= runs/demo

.PHONY: install demo results lint test test-fast bench ui clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# CPU torch first, so nothing later can pull a CUDA build
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"
	# torchrec's metadata requires the CUDA fbgemm-gpu; the CPU build is already installed
	$(PY) -m pip install --quiet --no-deps torchrec==1.8.0
	touch $(STAMP)

demo: install
	$(VENV)/bin/recsys run --config configs/demo.yaml --run-dir $(RUN_DIR)

# every number in README's Results: the demo world (one split, then 3 rolling-origin folds) and MovieLens-small with
# posters (5 rolling-origin folds); deterministic: the same commit gives the same tables on one machine; each run
# writes <run-dir>/results.md
results: install
	$(VENV)/bin/recsys run --config configs/demo.yaml --run-dir runs/demo
	$(VENV)/bin/recsys run --config configs/demo.yaml --run-dir runs/demo_rolling --set data.split.folds=3
	$(VENV)/bin/recsys run --config configs/movielens.yaml --run-dir runs/movielens

# ruff and the layering contracts (pyproject.toml) run first: a broken arrow fails `make test` in seconds
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-logo

# the 25 slowest tests are listed at the end: where the suite's time goes
test: lint
	$(PY) -m pytest tests --durations=25

test-fast: install
	$(PY) -m pytest tests -m "not slow"

# every benchmark of the targets in BENCHMARKS.md, one after another (never in parallel: they time the cores), each
# replacing its own section of BENCHMARKS.md; about 15 minutes on 2 cores
bench: install
	$(PY) benchmarks/features_bench.py --write
	$(PY) benchmarks/threads_bench.py --write
	$(PY) benchmarks/fusion_inference.py --write
	$(PY) benchmarks/encoder_runtime.py --write
	$(PY) benchmarks/startup_bench.py --write

ui: install
	$(VENV)/bin/mlflow ui --host 127.0.0.1 --port 5000 --backend-store-uri sqlite:///$(RUN_DIR)/mlflow.db

clean:
	rm -rf runs .pytest_cache
