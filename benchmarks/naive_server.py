"""The naive baseline for benchmarks/serve_load.py: the FastAPI search service most first versions look like.

One torch forward per request (the model's own HF weights, mean pooling, "query: " prefix), run in FastAPI's
thread pool, then a search of the same FAISS index the real service loads. No batching, no ONNX, no tuning.

    python -m benchmarks.naive_server --model-dir models/multilingual-e5-small --index-dir indexes/demo --port 8001
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

from app.manifest import load_model_manifest
from app.stores.embedded.index import SearchIndex
from training.model import load_encoder


class Query(BaseModel):
    query: str
    top_k: int = 10


def create_naive_app(model_dir: Path, index_dir: Path) -> FastAPI:
    manifest = load_model_manifest(model_dir)
    encoder = load_encoder(model_dir)
    index = SearchIndex.load(index_dir)
    app = FastAPI(title="naive baseline")

    @app.get("/ready")
    def ready() -> dict:
        return {"ready": True}

    @app.post("/search")
    def search(body: Query) -> dict:
        with torch.no_grad():
            vector = encoder.embed([body.query], manifest.query_prefix).numpy()
        hits = index.search(vector, body.top_k)[0]
        return {"results": [{"id": h.document.id, "score": h.score} for h in hits]}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--index-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    app = create_naive_app(args.model_dir, args.index_dir)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
