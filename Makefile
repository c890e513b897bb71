# Setup, tests and the main jobs. `make install && make test` on a fresh machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
DATA ?= data
SRC ?=
OUT ?= $(DATA)/afew_prepared
JOBS ?= 2
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install test test-slow prepare-afew synth-afew bench-prepare demo clean

install: $(BIN)/fer-keras

$(BIN)/fer-keras: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -e ".[dev]"
	touch $@

test:
	$(BIN)/python -m pytest -n 2 tests

test-slow:
	$(BIN)/python -m pytest -m slow tests || [ $$? -eq 5 ]  # 5: no slow test selected

synth-afew:
	$(BIN)/fer-keras synth afew $(DATA)/synthetic_afew

# With SRC unset the synthetic AFEW dataset is written and prepared.
prepare-afew:
	$(BIN)/fer-keras prepare afew $(SRC) $(OUT) -j $(JOBS)

bench-prepare:
	$(BIN)/python -m data_prep.benchmark --out $(DATA)/bench_prepare

clean:
	rm -rf $(DATA) .pytest_cache build *.egg-info

# The main job on the built-in demo data (extended to train and evaluate with the training engine).
demo: prepare-afew
