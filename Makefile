# ravdess-tfrecords. Every target installs what it needs into .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WORKERS ?= $(shell nproc 2>/dev/null || echo 2)

DEMO_DIR ?= demo_output
RAVDESS_DIR ?=
TFRECORDS_DIR ?= tfrecords
VOCAL_CHANNELS ?= speech
MODALITY ?= auto
FILE_FORMAT ?= tfrecord
BENCH_ARGS ?=

.PHONY: install test demo tfrecords bench bench-accuracy lint clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,tf,grain,beam,convert,tfds,onnx]'
	touch $(STAMP)

install: $(STAMP)

# Three test processes (pytest-xdist) on 2 cores, a test file each at a time: most tests wait on a
# subprocess (a TensorFlow import, a conversion, a training run) for much of their time, which two
# processes left idle (153% of 200% CPU).
TEST_PROCESSES ?= 3

test: install
	$(BIN)/python -m pytest -q -n $(TEST_PROCESSES) --dist loadfile --durations=15

lint: install
	$(BIN)/ruff check ravdess_tfrecords trainers tools tests

tfrecords: install
	@if [ -z "$(RAVDESS_DIR)" ]; then \
	  echo "make tfrecords needs RAVDESS_DIR: the RAVDESS download (zenodo record 1188976)."; \
	  echo "  Get Video_Speech_Actor_01.zip .. Video_Speech_Actor_24.zip from https://zenodo.org/record/1188976,"; \
	  echo "  (audio-only models: Audio_Speech_Actors_01-24.zip, 208 MB, is enough)"; \
	  echo "  then: make tfrecords RAVDESS_DIR=/path/to/zips-or-folders TFRECORDS_DIR=/path/to/out"; \
	  echo "No download? 'make demo' runs everything on a synthetic RAVDESS-shaped corpus."; \
	  exit 2; fi
	$(BIN)/python -m ravdess_tfrecords.convert --input="$(RAVDESS_DIR)" --output="$(TFRECORDS_DIR)" \
	  --workers=$(WORKERS) --vocal_channels=$(VOCAL_CHANNELS) --modality=$(MODALITY) \
	  --file_format=$(FILE_FORMAT)

# Accuracy on real speech: speaker-independent CV of audio-only recipes (tools/bench_accuracy.py).
bench-accuracy: install
	@if [ -z "$(RAVDESS_DIR)" ]; then \
	  echo "make bench-accuracy needs RAVDESS_DIR: RAVDESS audio-only recordings, a folder or zip"; \
	  echo "  (Audio_Speech_Actors_01-24.zip from https://zenodo.org/record/1188976; the dev set: ../shared/real-speech)"; \
	  echo "  then: make bench-accuracy RAVDESS_DIR=../shared/real-speech [BENCH_ARGS='--variants=old,default']"; \
	  exit 2; fi
	$(BIN)/python -m tools.bench_accuracy --input="$(RAVDESS_DIR)" --workers=$(WORKERS) $(BENCH_ARGS)

demo: install
	$(BIN)/python -m tools.demo --output=$(DEMO_DIR) --workers=$(WORKERS)

bench: install
	$(BIN)/python -m tools.bench_convert
	$(BIN)/python -m tools.bench_pipeline
	$(BIN)/python -m tools.bench_train

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
