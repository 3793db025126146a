"""Command line: build an index from a JSONL corpus, or serve.

polyglot-search index --corpus data/demo/corpus.jsonl --out indexes/demo     # or: python -m app.cli index ...
polyglot-search serve
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from app.build import build_index
from app.collection import wal_path
from app.corpus import CorpusError, read_corpus
from app.encoder import OnnxEncoder, choose_variant
from app.manifest import ManifestError, load_index_manifest, load_model_manifest
from app.settings import Settings
from app.wal import WriteAheadLog


def index_command(args: argparse.Namespace, settings: Settings) -> None:
    model_dir = args.model_dir or settings.model_dir
    out = args.out or settings.index_dir
    manifest = load_model_manifest(model_dir)
    variant = choose_variant(manifest, settings.int8 if args.int8 is None else args.int8)
    encoder = OnnxEncoder(model_dir, variant, settings.runtime, settings.intra_op_threads, manifest)
    documents = list(read_corpus(args.corpus))
    if not documents:
        raise CorpusError(f"{args.corpus} holds no documents")
    log = _claim_write_log(out, args.discard_writes)
    started = time.perf_counter()
    index = build_index(
        encoder, documents, args.index_type, args.batch_size, progress=True, corpus_name=str(args.corpus)
    )
    version = index.save(out)
    if log is not None:  # the new index starts with an empty log: old writes must not replay onto it
        log.reset(last_seq=0)
        log.close()
    size_mb = sum(f.stat().st_size for f in version.iterdir()) / 2**20
    print(
        f"indexed {index.size} documents in {len(index.languages)} languages with {manifest.name} ({variant}) "
        f"in {time.perf_counter() - started:.1f} s -> {out} ({size_mb:.1f} MiB, {args.index_type})"
    )


def _claim_write_log(index_dir: Path, discard_writes: bool) -> WriteAheadLog | None:
    """A rebuild replaces the whole index, including writes made through the documents API (they are not in the
    corpus file): refuse while a server writes to it, and refuse to drop such writes unless asked."""
    path = wal_path(index_dir)
    log = None
    if path.exists():
        try:
            log = WriteAheadLog(path)
        except OSError as exc:
            raise ManifestError(f"{exc}; stop the server that writes to {index_dir} before rebuilding it") from exc
    try:
        written = load_index_manifest(index_dir).wal_seq
    except ManifestError:  # no index there yet
        written = 0
    written = max(written, log.last_seq if log else 0)
    if written and not discard_writes:
        if log is not None:
            log.close()
        raise ManifestError(
            f"{index_dir} has taken {written} write requests through the documents API, which are not in the "
            f"corpus file; rebuilding replaces them. Pass --discard-writes to rebuild anyway"
        )
    return log


def serve(settings: Settings) -> None:
    import uvicorn

    from app.limits import bounded_http_protocol
    from app.logs import log_config
    from app.main import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=log_config(settings.log_format, settings.log_level),
        http=bounded_http_protocol(settings),
    )


def main(argv: list[str] | None = None) -> None:
    program = "polyglot-search" if Path(sys.argv[0]).name == "polyglot-search" else "python -m app.cli"
    parser = argparse.ArgumentParser(prog=program, description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    index = commands.add_parser("index", help="encode a JSONL corpus into a FAISS index")
    index.add_argument("--corpus", type=Path, required=True, help='JSONL: {"id", "text", "lang", "metadata"?}')
    index.add_argument("--out", type=Path, help="index folder (default: SEARCH_INDEX_DIR)")
    index.add_argument("--model-dir", type=Path, help="model folder (default: SEARCH_MODEL_DIR)")
    index.add_argument("--index-type", choices=["flat", "hnsw"], default="flat", help="flat = exact search")
    index.add_argument("--batch-size", type=int, default=32)
    index.add_argument(
        "--int8",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="encode with the int8 model (default: the model's gated default)",
    )
    index.add_argument(
        "--discard-writes",
        action="store_true",
        help="rebuild even though the index took writes through the documents API (they are not in the corpus)",
    )
    commands.add_parser("serve", help="serve the API (settings from SEARCH_* environment variables)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("app").setLevel(logging.INFO)
    settings = Settings()
    try:
        if args.command == "index":
            index_command(args, settings)
        else:
            serve(settings)
    except (ManifestError, CorpusError, FileNotFoundError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
