# lesionkit: `make demo`, `make test`, `make bench`, `make models`. Each creates .venv when
# missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.lesionkit-installed
DEMO_DIR ?= demo
BENCH_DIR ?= bench-out

.PHONY: demo test bench models lint clean

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/lesionkit demo $(DEMO_DIR) --workers 2

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py --out $(BENCH_DIR) --markdown BENCHMARKS.md

# Rebuild the phantom-trained models shipped in src/lesionkit/shipped_models (about an
# hour on 2 CPU cores; ONLY="enhance-r1 ..." rebuilds some of them).
models: $(STAMP)
	$(BIN)/python scripts/train_models.py $(if $(ONLY),--only $(ONLY))

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) $(DEMO_DIR) $(BENCH_DIR) models-work .pytest_cache .ruff_cache
