# make run    : set up (.venv, pinned packages, detector weights) and run the pipeline
# make test   : set up for tests (training + test packages) and run every test;  make test-fast : the fast tier alone (pytest -m "not slow")
# make fuzz   : fuzz the wire decoder and running stages (100,000 cases each);  make soak : 10-minute memory and latency soak
# make supervisor-kill : kill -9 the supervisor at 24 moments of a run; nothing may outlive it
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.runtime
DEV_STAMP := $(VENV)/.installed
WEIGHTS := face_detector/weights/.fetched-runtime
TRAIN_WEIGHTS := face_detector/weights/.fetched
DATA ?= ../shared/data
SOURCE ?=
ARGS ?=
JSONL ?= runs/results.jsonl

.PHONY: setup dev-setup run demo test test-fast train evaluate loso calibrate bench fuzz soak supervisor-kill clean

# setup: the runtime only (requirements.txt, no TensorFlow) and the detector weights; dev-setup adds
# training and tests (requirements-dev.txt) and the training networks' weights.
setup: $(STAMP) $(WEIGHTS)
dev-setup: setup $(DEV_STAMP) $(TRAIN_WEIGHTS)

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --editable .   # the liveness-pipeline command, in .venv/bin
	touch $@

$(DEV_STAMP): $(STAMP) requirements.txt requirements-train.txt requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

$(WEIGHTS): $(STAMP) face_detector/fetch_weights.py
	$(PY) -m face_detector.fetch_weights res10 blazeface
	touch $@

$(TRAIN_WEIGHTS): $(DEV_STAMP) face_detector/fetch_weights.py
	$(PY) -m face_detector.fetch_weights
	touch $@

# The camera where one exists (or SOURCE=..., whose results go to JSONL), else the demo video made
# from a public-domain photo. ARGS="--set detect.workers=2 ..." passes options through.
run: setup
	@if [ -n "$(SOURCE)" ] || ls /dev/video* >/dev/null 2>&1; then \
		$(PY) run_pipeline.py --config configs/default.yaml $(if $(SOURCE),--source "$(SOURCE)" --jsonl "$(JSONL)") $(ARGS); \
	else \
		echo "make run: no camera on this machine, so running the demo video (make run SOURCE=FILE|URL|FOLDER for yours)"; \
		$(MAKE) --no-print-directory demo; \
	fi

demo: setup
	$(PY) examples/make_demo_video.py runs/demo.avi
	$(PY) run_pipeline.py --config configs/file.yaml --source runs/demo.avi --jsonl runs/demo.jsonl \
		--set display.video=runs/demo_annotated.avi $(ARGS)
	@echo "make demo: results in runs/demo.jsonl, annotated video in runs/demo_annotated.avi"

test: dev-setup
	$(PY) -m pytest

# The fast tier alone (no whole pipelines as processes, no training): under a minute.
test-fast: dev-setup
	$(PY) -m pytest -m "not slow"

# Throughput, live latency, memory, scaling (BENCHMARKS.md); the last line is one JSON object.
# BENCH_ARGS="--live-seconds 60" shortens the 5-minute live run.
BENCH_ARGS ?=
bench: dev-setup
	$(PY) bench/pipeline_bench.py $(BENCH_ARGS)

# Fuzz the wire decoder (FUZZ_EXAMPLES byte-level mutations of real messages, plus structured cases),
# then running stages: FUZZ_STAGE_MESSAGES hostile messages into a supervised lossless run, which must
# still give every real frame its one true result (tests/test_fuzz_stages.py).
FUZZ_EXAMPLES ?= 100000
FUZZ_STAGE_MESSAGES ?= 100000
fuzz: dev-setup
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q -p no:cacheprovider --timeout=0 tests/test_fuzz_wire.py
	FUZZ_STAGE_MESSAGES=$(FUZZ_STAGE_MESSAGES) $(PY) -m pytest -q -s -p no:cacheprovider --timeout=0 tests/test_fuzz_stages.py

# Run the pipeline on a looping 30 fps file for SOAK_SECONDS; fails above 5% RSS growth after warm-up.
SOAK_SECONDS ?= 600
soak: dev-setup
	$(PY) bench/soak.py --seconds $(SOAK_SECONDS)

# kill -9 run_pipeline.py at KILL_TRIALS moments from its start to 14 s (start-up, run, end); fails when
# a stage process or the run folder is still there 5 s later (bench/supervisor_kill.py)
KILL_TRIALS ?= 24
supervisor-kill: dev-setup
	$(PY) bench/supervisor_kill.py --trials $(KILL_TRIALS)

# Training (offline; docs/training.md). On 2 cores: ~9 min to gather the shared data once (runs/cache),
# ~21 min for the leave-one-setup-out estimate, ~5 min to train, seconds to calibrate.
# `make train` reproduces models/liveness.onnx from RECIPE: the estimate with whole capture setups left
# out (its out-of-fold scores choose the threshold), the model trained on every source, the threshold
# written into it.
RECIPE ?= configs/recipes/2.0.yaml
LOSO_OUT ?= runs/loso
loso: dev-setup
	$(PY) -m training.evaluate --loso --data $(DATA) --recipe $(RECIPE) --out $(LOSO_OUT)

train: loso
	$(PY) -m training.train --dataset $(DATA) --recipe $(RECIPE) --model models/liveness.onnx --plot runs/plot.png
	$(MAKE) --no-print-directory calibrate

calibrate: dev-setup
	$(PY) -m training.calibrate --model models/liveness.onnx --scores $(LOSO_OUT)/oof_scores.csv --min-acer

evaluate: dev-setup
	$(PY) -m training.evaluate --model models/liveness.onnx --data $(DATA) --stress --out runs/eval

clean:
	rm -rf runs .pytest_cache
