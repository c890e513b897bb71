# Setup, tests and the main jobs. `make install && make test` on a fresh machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
DATA ?= data
SRC ?=
OUT ?= $(DATA)/afew_prepared
JOBS ?= 2
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install test test-slow prepare-afew synth-afew bench-prepare bench-pipeline train evaluate tune demo clean

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

# Shard pipeline vs one JPEG file per frame (sequences/s), and vggface_bgru steps/s with/without XLA.
bench-pipeline:
	$(BIN)/python -m fer_keras.data.benchmark --out $(DATA)/bench_pipeline $(ARGS)

clean:
	rm -rf $(DATA) runs .pytest_cache build *.egg-info

# fer-keras train CONFIG: the run directory defaults to runs/<experiment name>.
CONFIG ?=
RUN ?=
train:
	@test -n "$(CONFIG)" || { echo "usage: make train CONFIG=experiments/.../x.yaml [RUN=runs/x]"; exit 2; }
	$(BIN)/fer-keras train $(CONFIG) $(if $(RUN),--run-dir $(RUN))

evaluate:
	@test -n "$(RUN)" || { echo "usage: make evaluate RUN=runs/x"; exit 2; }
	$(BIN)/fer-keras evaluate $(RUN)

# fer-keras tune: Bayesian search over MODEL's registry search space into runs/tune/<MODEL>
# (rerun to resume) on TUNE_DATA; ARGS adds options, e.g. ARGS="--objective val_accuracy",
# ARGS="--set model.options.input_size=32 data.pipeline.seq_len=8" (a small size for a CPU).
MODEL ?= vggface_bgru
TRIALS ?= 10
TUNE_DATA ?= $(DATA)/afew_prepared
ARGS ?=
tune:
	$(BIN)/fer-keras tune --model $(MODEL) --data $(TUNE_DATA) --trials $(TRIALS) $(ARGS)

# The main job on the built-in demo data: synthetic AFEW -> prepare -> train vggface_bgru from
# scratch -> evaluate (predictions, metrics, confusion matrices, report in runs/demo).
DEMO_DATA := $(DATA)/demo_prepared
DEMO_RUN ?= runs/demo
demo:
	$(BIN)/fer-keras synth afew $(DATA)/demo_source --train-per-class 4 --val-per-class 2 --width 720 --height 576
	$(BIN)/fer-keras prepare afew $(DATA)/demo_source $(DEMO_DATA) -j $(JOBS)
	$(BIN)/fer-keras train experiments/demo/vggface_bgru_synthetic.yaml --run-dir $(DEMO_RUN) \
		--set data.root=$(DEMO_DATA)
