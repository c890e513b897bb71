# Setup, tests and the main jobs. `make install && make test` on a fresh machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
DATA ?= data
SRC ?=
# OUT: output of a prepare-NAME / synth-NAME target (default data/NAME_prepared, data/synthetic_NAME)
OUT ?=
JOBS ?= 2
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install test test-slow verify bench-verify bench-prepare bench-prepare-bu4dfe bench-pipeline train evaluate tune demo clean

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

# Any registered dataset (data_prep/registry.py), with the same variables for every one:
#   make synth-NAME [OUT=DIR] [ARGS=...]          a synthetic set in NAME's real layout (OUT: data/synthetic_NAME)
#   make prepare-NAME [SRC=...] [OUT=DIR] [JOBS=N] [ARGS=...]
#                                                 prepare SRC into OUT (default data/NAME_prepared); with SRC
#                                                 unset a synthetic source is written under OUT and prepared.
# ARGS adds options (fer-keras prepare NAME --help), e.g. ARGS="--augment faithful" or ARGS="--face-size 160".
synth-%:
	$(BIN)/fer-keras synth $* $(or $(OUT),$(synth_out_$*),$(DATA)/synthetic_$*) $(ARGS)

prepare-%:
	$(BIN)/fer-keras prepare $* $(or $(SRC),$($*_SRC)) $(or $(OUT),$(DATA)/$*_prepared) -j $(JOBS) $(ARGS) $($*_ARGS)

# A dataset distributed as a URL sheet (EmotioNet): make download-NAME SHEET=... [OUT=DIR] [ARGS=...] fetches
# its images into OUT (default data/NAME_download); rerun to resume, ARGS="--retry-failed timeout,dns" retries
# those failures. With SHEET unset, the synthetic sheet under data/synthetic_NAME is downloaded from its own
# local server on 127.0.0.1 (make synth-NAME first).
SHEET ?=
download-%:
	$(if $(SHEET),$(BIN)/fer-keras download $* $(SHEET) $(or $(OUT),$(DATA)/$*_download) $(ARGS),$(BIN)/python -m data_prep.datasets.$*.fetch $(DATA)/synthetic_$* $(or $(OUT),$(DATA)/$*_download) $(ARGS))

# Older names that keep working: BU-4DFE's OPENFACE=DIR (folder of OpenFace CSVs; default beside each
# video) and FER2013's CSV=fer2013.csv.
OPENFACE ?=
CSV ?=
bu4dfe_ARGS = $(if $(OPENFACE),--openface $(OPENFACE))
fer2013_SRC = $(CSV)
synth_out_fer2013 = $(DATA)/synthetic_fer2013.csv

# Cached CNN features for thesis 002's cascades: RUN=a FER2013 run directory (or CONFIG=an experiment YAML
# naming the image model and its weights) over FEATURES_DATA into OUT (default data/bu4dfe_features);
# ARGS adds options, e.g. ARGS="--tap dense --dtype float16 --augmentations all". Rerun to resume.
FEATURES_DATA ?= $(DATA)/bu4dfe_prepared
.PHONY: features
features:
	@test -n "$(or $(RUN),$(CONFIG))" || { echo "usage: make features RUN=runs/x|CONFIG=x.yaml [FEATURES_DATA=$(FEATURES_DATA)] [OUT=...] [ARGS=...]"; exit 2; }
	$(BIN)/fer-keras features $(or $(RUN),$(CONFIG)) --data $(FEATURES_DATA) --out $(or $(OUT),$(DATA)/bu4dfe_features) $(ARGS)

bench-prepare:
	$(BIN)/python -m data_prep.bench.prepare --out $(DATA)/bench_prepare

# Join the shares of preparations run with ARGS="--shard I/N" (one shared OUT or one folder each) into OUT:
#   make merge PARTS="data/afew_part0 data/afew_part1" OUT=data/afew_prepared   (rerun it after a kill)
PARTS ?=
.PHONY: merge
merge:
	@test -n "$(PARTS)" -a -n "$(OUT)" || { echo 'usage: make merge PARTS="DIR ..." OUT=DIR'; exit 2; }
	$(BIN)/fer-keras merge $(PARTS) $(OUT)

# Check a prepared dataset (ROOT=DIR, default the demo's): sizes, SHA-256, counts; ARGS="--records" parses every record.
ROOT ?= $(DATA)/demo_prepared
verify:
	$(BIN)/fer-keras verify $(ROOT) $(ARGS)

# verify beside `cat FILES > /dev/null` on the same dataset, in one run (run make demo first for the default ROOT).
bench-verify:
	$(BIN)/python -m fer_keras.bench.verify $(ROOT)

# Haar on the first frames + MedianFlow tracking vs MTCNN on every frame (frames/s, same-face share).
bench-prepare-bu4dfe:
	$(BIN)/python -m data_prep.bench.tracking --out $(DATA)/bench_prepare_bu4dfe $(ARGS)

# prepare va vs prepare afew on the same two-person 1280x720 clips (frames/s ratio), and the peak memory of
# prepare va on one long 1280x720 video (ARGS="--minutes 10" for the 15,000-frame target).
.PHONY: bench-prepare-va
bench-prepare-va:
	$(BIN)/python -m data_prep.bench.prepare_va --out $(DATA)/bench_prepare_va $(ARGS)

# The EmotioNet downloader against a one-at-a-time loop on a local server with 100 ms latency (images/s ratio,
# the most connections the server saw open).
.PHONY: bench-download
bench-download:
	$(BIN)/python -m data_prep.bench.download $(ARGS)

# Shard pipeline vs one JPEG file per frame (sequences/s), and vggface_bgru steps/s with/without XLA.
bench-pipeline:
	$(BIN)/python -m fer_keras.bench.pipeline --out $(DATA)/bench_pipeline $(ARGS)

# Thesis 002 cascade on cached VGGFace features vs recomputing them every epoch (ratio, reader vs step rate).
.PHONY: bench-cascade
bench-cascade:
	$(BIN)/python -m fer_keras.bench.cascade --out $(DATA)/bench_cascade $(ARGS)

# Thesis 003 VGG19+LSTM on cached frozen-CNN features vs recomputing the CNN every epoch (epoch ratio, break-even).
.PHONY: bench-va
bench-va:
	$(BIN)/python -m fer_keras.bench.va --out $(DATA)/bench_va $(ARGS)

# Per-item cost of each stage on this machine, its growth with input size, and projected wall time for AFEW,
# BU-4DFE, Aff-Wild and EmotioNet at 1, 8 and 64 workers (the README's scaling guide; ARGS="--quick" for a smoke run).
.PHONY: scaling-report
scaling-report:
	$(BIN)/python -m data_prep.bench.scaling --out $(DATA)/scaling $(ARGS)

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

# fer-keras cv CONFIG: the folds of the experiment's split file, then the final model (thesis 002);
# OUT is the CV directory (default runs/cv/<config name>), PHASE=folds|final|all (default all).
PHASE ?= all
.PHONY: cv
cv:
	@test -n "$(CONFIG)" || { echo "usage: make cv CONFIG=experiments/.../x.yaml [OUT=runs/cv/x] [PHASE=folds|final|all]"; exit 2; }
	$(BIN)/fer-keras cv $(CONFIG) --out $(or $(OUT),runs/cv/$(basename $(notdir $(CONFIG)))) --phase $(PHASE)

# A whole thesis in order (experiments/thesis<THESIS>/reproduce.yaml) into runs/, skipping what is done,
# then runs/results-<THESIS>.md beside the thesis's numbers; SMOKE=1: synthetic data, tiny sizes, runs/smoke,
# random starting weights. WEIGHTS="vggface_vgg16=FILE vgg16=FILE ...": the local weights file of each
# pretrained backbone (nothing is downloaded); without them a real run is refused (fer-keras reproduce
# THESIS --random-init: random starting weights, meant).
THESIS ?= 002
SMOKE ?=
WEIGHTS ?=
.PHONY: reproduce results
reproduce:
	$(BIN)/fer-keras reproduce $(THESIS) $(if $(SMOKE),--smoke --random-init) $(if $(WEIGHTS),--weights $(WEIGHTS))

# The results tables of the runs under RUNS (default runs) for THESIS, beside the thesis's numbers.
RUNS ?= runs
results:
	$(BIN)/fer-keras results $(RUNS) --thesis $(THESIS) --out $(RUNS)/results-$(THESIS).md

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
