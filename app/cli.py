"""Command line: index documents (a folder of files, or a JSONL/CSV/TSV/Parquet file), copy an embedded index into
Milvus, or serve.

polyglot-search index --corpus data/samples --out indexes/samples            # or: python -m app.cli index ...
polyglot-search index --corpus data/demo/corpus.jsonl --out indexes/demo
polyglot-search index --corpus data/demo/corpus.jsonl --store milvus         # into SEARCH_MILVUS_URI, resumable
polyglot-search copy --from indexes/demo                                     # an embedded index into Milvus
polyglot-search backup --server http://127.0.0.1:8000 --out demo.tar         # a live server's index
polyglot-search restore demo.tar --index-dir indexes/demo --replace          # the server stopped
polyglot-search verify indexes/demo                                          # or: verify demo.tar
polyglot-search eval data/eval-sample --model-dir models/multilingual-e5-small \
    --model-dir models/multilingual-e5-small-hybrid                          # base vs default on judged queries
polyglot-search serve
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from app.build import build_index, discard_shards
from app.corpus import Document
from app.encoder import OnnxEncoder, choose_variant
from app.errors import ServiceError
from app.evaluation.data import EvalDataError
from app.ingest.passages import PassageMaker, iter_passages, passage_maker, read_passages
from app.ingest.sources import Columns, CorpusError, ImportReport, describe
from app.manifest import ManifestError, load_index_manifest
from app.model_choice import ModelChoice, choose_for_corpus, given_model, model_for_store
from app.settings import Settings
from app.stores.embedded.wal import WalError, WriteAheadLog, wal_path

if TYPE_CHECKING:
    from app.stores.embedded.index import SearchIndex
    from app.stores.milvus import MilvusStore

CHOICE_SAMPLE = 2000  # passages whose languages choose the model of a corpus streamed into Milvus


def _encoder(choice: ModelChoice, args: argparse.Namespace, settings: Settings) -> OnnxEncoder:
    variant = choose_variant(choice.manifest, settings.int8 if args.int8 is None else args.int8)
    return OnnxEncoder(choice.model_dir, variant, settings.runtime, settings.intra_op_threads, choice.manifest)


def _maker(encoder: OnnxEncoder, args: argparse.Namespace, settings: Settings) -> PassageMaker:
    try:
        return passage_maker(encoder, settings, args.passage_tokens, args.overlap_tokens)
    except ValueError as exc:
        raise CorpusError(f"--passage-tokens/--overlap-tokens: {exc}") from exc


def _splits_alike(a: ModelChoice, b: ModelChoice) -> bool:
    """Whether two models cut documents into the same passages: same tokenizer, passage prefix and limit."""

    def shape(choice: ModelChoice) -> tuple[str, int, bytes]:
        manifest = choice.manifest
        return manifest.passage_prefix, manifest.max_length, (choice.model_dir / manifest.tokenizer_file).read_bytes()

    return a.model_dir == b.model_dir or shape(a) == shape(b)


def index_command(args: argparse.Namespace, settings: Settings) -> None:
    """Passages are cut with the multilingual model's tokenizer (or --model-dir's), then the corpus's language mix
    chooses the model that encodes them (app.model_choice)."""
    splitting = given_model(args.model_dir or settings.model_dir)
    maker = _maker(_encoder(splitting, args, settings), args, settings)
    columns = Columns(args.id_column, args.text_column, args.lang_column, args.title_column)
    report = ImportReport()
    if (args.store or settings.store) == "milvus":
        milvus_index_command(args, settings, splitting, maker, columns)
        return
    documents = read_passages(args.corpus, maker, columns, report)
    print(describe(report))
    if args.strict and report.skipped:
        raise CorpusError(f"{len(report.skipped)} files could not be read (--strict); nothing was indexed")
    if not documents:
        raise CorpusError(f"{args.corpus} holds no documents")
    choice = _choose(args, settings, documents)
    encoder = _encoder(choice, args, settings)
    if not _splits_alike(choice, splitting):
        maker = _maker(encoder, args, settings)
        documents = read_passages(args.corpus, maker, columns, ImportReport())
    manifest, variant = encoder.manifest, encoder.variant
    out = args.out or settings.index_dir
    log = _claim_write_log(out, args.discard_writes)
    shards = out.with_name(f".{out.name}.shards")  # encoded passages kept until the index is saved: a rerun resumes
    started = time.perf_counter()
    index = build_index(
        encoder,
        documents,
        args.index_type,
        args.batch_size,
        progress=True,
        corpus_name=str(args.corpus),
        passage_tokens=maker.splitter.max_tokens,
        passage_overlap_tokens=maker.splitter.overlap_tokens,
        shard_dir=shards,
        model_choice=choice.reason,
    )
    version = index.save(out)
    discard_shards(shards)
    if log is not None:  # the new index starts with an empty log: old writes must not replay onto it
        log.reset(last_seq=0)
        log.close()
    size_mb = sum(f.stat().st_size for f in version.iterdir()) / 2**20
    print(
        f"indexed {index.size} passages in {len(index.languages)} languages with {manifest.name} ({variant}) "
        f"in {time.perf_counter() - started:.1f} s -> {out} ({size_mb:.1f} MiB, {args.index_type})"
    )


def _choose(args: argparse.Namespace, settings: Settings, passages: list[Document]) -> ModelChoice:
    """--model-dir as given, or the model for the passages' language mix; printed with the reason."""
    if args.model_dir is not None:
        choice = given_model(args.model_dir)
    else:
        choice = choose_for_corpus(settings, Counter(p.lang for p in passages))
    print(f"model: {choice.model_dir} ({choice.role.replace('_', '-')}): {choice.reason}")
    return choice


def _milvus_settings(args: argparse.Namespace, settings: Settings) -> Settings:
    overrides = {"milvus_uri": args.milvus_uri, "milvus_collection": args.collection}
    return settings.model_copy(update={key: value for key, value in overrides.items() if value})


def milvus_index_command(
    args: argparse.Namespace,
    settings: Settings,
    splitting: ModelChoice,
    maker: PassageMaker,
    columns: Columns,
) -> None:
    """Stream the passages into Milvus in batches (memory bounded by a batch, not the corpus); passages whose ids the
    collection holds are skipped, so an interrupted run picks up where it stopped (``--discard-writes`` drops the
    collection and starts over). With ``--strict`` the first unreadable file stops the run. The model is the one the
    collection records, or else chosen by the language mix of the first ``CHOICE_SAMPLE`` passages."""
    from app.stores.milvus import CollectionIdentity, milvus_store

    settings = _milvus_settings(args, settings)
    started = time.perf_counter()
    report = ImportReport()
    passages = iter_passages(args.corpus, maker, columns, report)
    store = milvus_store(settings)
    written = already = 0
    try:
        if args.discard_writes and store.exists():
            store.drop()
        stored = store.stored_identity()
        if stored is not None and args.model_dir is None:
            choice = model_for_store(settings, lambda: stored.model_fingerprint)
            print(f"model: {choice.model_dir} ({choice.role.replace('_', '-')}): {choice.reason}")
        else:
            head = list(itertools.islice(passages, CHOICE_SAMPLE))
            choice = _choose(args, settings, head) if head else splitting
            passages = itertools.chain(head, passages)
        encoder = _encoder(choice, args, settings)
        if not _splits_alike(choice, splitting):  # read again from the start, cut for the chosen model
            report = ImportReport()
            passages = iter_passages(args.corpus, _maker(encoder, args, settings), columns, report)
        store.open(CollectionIdentity.of_model(encoder.manifest, encoder.variant), settings.milvus_index_type)
        for batch in _batches(passages, args.batch_size * 8):
            if args.strict and report.skipped:
                break
            present = store.present([d.id for d in batch])
            todo = [d for d in batch if d.id not in present]
            if todo:
                embeddings = encoder.encode([d.text for d in todo], "passage", args.batch_size, progress=False)
                store.upsert(todo, embeddings)
            written, already = written + len(todo), already + len(batch) - len(todo)
        size = store.size
    finally:
        store.close()
    print(describe(report))
    if args.strict and report.skipped:
        raise CorpusError(
            f"{report.skipped[0][0]} could not be read (--strict): stopped there, after {written + already} "
            "passages; fix or remove it and run again (it resumes)"
        )
    if not written + already:
        raise CorpusError(f"{args.corpus} holds no documents")
    print(
        f"indexed {written} new passages ({already} already there) with "
        f"{encoder.manifest.name} ({encoder.variant}) in {time.perf_counter() - started:.1f} s -> Milvus "
        f"{settings.milvus_uri} collection {settings.milvus_collection} ({size} documents)"
    )


def _batches(items: Iterable[Document], size: int) -> Iterator[list[Document]]:
    """Lists of ``size`` items as they come (itertools.batched needs Python 3.12)."""
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def _missing(store: MilvusStore, documents: list[Document], batch: int = 1000) -> list[Document]:
    """The documents whose ids the collection does not hold yet, in corpus order."""
    present: set[str] = set()
    for start in range(0, len(documents), batch):
        present |= store.present([d.id for d in documents[start : start + batch]])
    return [d for d in documents if d.id not in present]


def copy_command(args: argparse.Namespace, settings: Settings) -> None:
    """Copy an embedded index (its snapshot and the writes in its log) into Milvus, vectors as they are: no
    re-encoding. Ids already in the collection are skipped, so an interrupted copy resumes."""
    from app.stores.embedded.collection import Collection
    from app.stores.milvus import CollectionIdentity, connect_milvus

    settings = _milvus_settings(args, settings)
    source = Collection(args.source, snapshot_every=10**9, graphs=False)  # replays the source's log
    try:
        snapshot = source.index.snapshot_copy()
        vectors, documents, manifest = snapshot.vectors, snapshot.documents, snapshot.manifest
    finally:
        source.close()  # folds the logged writes into a snapshot when the index is writable
    identity = CollectionIdentity.of_index(manifest)
    started = time.perf_counter()
    store = connect_milvus(settings, identity)
    try:
        todo = {d.id for d in _missing(store, documents)}
        rows = [i for i, d in enumerate(documents) if d.id in todo]
        with tqdm(total=len(documents), initial=len(documents) - len(rows), unit="doc", desc="copy") as bar:
            for start in range(0, len(rows), args.batch_size):
                chunk = rows[start : start + args.batch_size]
                store.upsert([documents[i] for i in chunk], vectors.reconstruct_batch(chunk))
                bar.update(len(chunk))
        size = store.size
    finally:
        store.close()
    print(
        f"copied {len(rows)} documents ({len(documents) - len(rows)} already there) from {args.source} in "
        f"{time.perf_counter() - started:.1f} s -> Milvus {settings.milvus_uri} collection "
        f"{settings.milvus_collection} ({size} documents)"
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


def backup_command(args: argparse.Namespace, settings: Settings) -> None:
    """A live server's index over HTTP (POST /backup), or a stopped one's from its folder; verified, then kept."""
    from app.stores.embedded.backup import write_archive

    out: Path = args.out
    if args.index_dir is not None:
        from app.stores.embedded.collection import Collection

        try:  # a served index's log is locked, and its segments move while it is read
            WriteAheadLog(wal_path(args.index_dir)).close()
        except OSError as exc:
            raise ManifestError(f"{exc}: back a served index up with --server") from exc
        source = Collection(args.index_dir, snapshot_every=10**9, graphs=False)  # replays its log
        try:
            folder, _ = source.backup()
        finally:
            source.stop_snapshots()
            if source.wal is not None:
                source.wal.close()
        try:
            write_archive(folder, out)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    else:
        _download_backup(args.server.rstrip("/"), args.key or next(iter(settings.write_api_keys), None), out)
    index = _verified_archive(out)
    print(
        f"backed up {index.size} passages in {len(index.languages)} languages (model {index.manifest.model_name}, "
        f"log sequence {index.manifest.wal_seq}) -> {out} ({out.stat().st_size / 2**20:.1f} MiB, verified)"
    )


def _download_backup(server: str, key: str | None, out: Path) -> None:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"{server}/backup", method="POST", headers={"Authorization": f"Bearer {key}"})
    part = out.with_name(out.name + ".part")
    try:
        with urllib.request.urlopen(request, timeout=600) as answer, open(part, "wb") as handle:
            total = int(answer.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc="backup") as bar:
                while block := answer.read(1 << 20):
                    handle.write(block)
                    bar.update(len(block))
            handle.flush()
            os.fsync(handle.fileno())
    except urllib.error.HTTPError as exc:
        part.unlink(missing_ok=True)
        detail = exc.read().decode("utf-8", "replace")
        raise ManifestError(f"{server}/backup answered {exc.code}: {detail}") from exc
    except (urllib.error.URLError, OSError) as exc:
        part.unlink(missing_ok=True)
        raise ManifestError(f"could not take a backup from {server}: {exc}") from exc
    os.replace(part, out)


def _verified_archive(archive: Path) -> SearchIndex:
    from app.stores.embedded.backup import verify_archive

    with tempfile.TemporaryDirectory(dir=archive.parent, prefix=f".{archive.name}.verify-") as scratch:
        return verify_archive(archive, Path(scratch))


def restore_command(args: argparse.Namespace, settings: Settings) -> None:
    """The archive verified, its model checked against the server's, then made the index (the old one moved aside)."""
    from app.manifest import load_model_manifest
    from app.stores.embedded.backup import restore_archive

    model_dirs = [args.model_dir] if args.model_dir else [settings.model_dir, settings.one_language_model_dir]
    fingerprints = {}
    for model_dir in model_dirs:
        if model_dir is not None and (model_dir / "manifest.json").is_file():
            manifest = load_model_manifest(model_dir)
            fingerprints[manifest.fingerprint] = manifest.name
    if not fingerprints:
        raise ManifestError(f"no exported model in {', '.join(map(str, model_dirs))}: pass --model-dir")
    index_dir = args.index_dir or settings.index_dir
    try:
        manifest = restore_archive(args.archive, index_dir, fingerprints, args.replace)
    except OSError as exc:
        raise ManifestError(f"{exc}; stop the server that writes to {index_dir} before restoring") from exc
    print(
        f"restored {manifest.size} passages (model {manifest.model_name}, log sequence {manifest.wal_seq}) "
        f"-> {index_dir}"
    )


def verify_command(args: argparse.Namespace, settings: Settings) -> None:
    """An index folder (its served snapshot and its log) or a backup archive, checked offline."""
    from app.stores.embedded.backup import verify_index_folder

    path: Path = args.path
    if path.is_file():
        index, pending = _verified_archive(path), 0
    else:
        index, pending = verify_index_folder(path)
    manifest = index.manifest
    print(
        f"ok: {path} holds {index.size} passages in {len(index.languages)} languages, encoded by "
        f"{manifest.model_name} ({manifest.model_fingerprint[:12]}), at log sequence {manifest.wal_seq}"
        + (f", with {pending} logged writes to replay" if pending else "")
        + "; checksums and vectors verified"
    )


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


def eval_command(args: argparse.Namespace, settings: Settings) -> None:
    """Rank the judged queries with each model folder (or the server) and print the figures (app/evaluation)."""
    from app.evaluation.data import load_eval_set
    from app.evaluation.report import evaluate, markdown, write_outputs
    from app.evaluation.runs import rank_with_model, rank_with_server

    data = load_eval_set(args.data, args.split, args.queries, args.qrels, args.corpus, with_corpus=not args.server)
    detected = sum(q.lang_detected for q in data.queries)
    corpus = f"{len(data.corpus)} documents" if data.corpus else "the server's index as the corpus"
    left_out = f"; {data.left_out} left out: no relevant document" if data.left_out else ""
    print(
        f"{len(data.queries)} judged queries in {len(data.queries_by_language())} languages "
        f"({detected} detected), {corpus}{left_out}",
        file=sys.stderr,
    )
    if args.server:
        rankings = [rank_with_server(args.server, data, args.depth, args.api_key)]
    else:
        rankings = [rank_with_model(model_dir, data, args.depth, settings) for model_dir in args.model_dir]
    result = evaluate(rankings, data, args.depth)
    print(markdown(result))
    written = write_outputs(result, args.out)
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    if not any(path.suffix == ".png" for path in written):
        print("no plot: pip install 'polyglot-search[eval]' (matplotlib) for per-language.png", file=sys.stderr)


COMMANDS = {
    "eval": eval_command,
    "index": index_command,
    "copy": copy_command,
    "backup": backup_command,
    "restore": restore_command,
    "verify": verify_command,
}


def main(argv: list[str] | None = None) -> None:
    program = "polyglot-search" if Path(sys.argv[0]).name == "polyglot-search" else "python -m app.cli"
    parser = argparse.ArgumentParser(prog=program, description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    index = commands.add_parser("index", help="split documents into passages and encode them into an index")
    index.add_argument(
        "--corpus",
        type=Path,
        required=True,
        help="a folder of .txt/.md/.html/.pdf files (id = relative path), or a .jsonl "
        '({"id", "text", "lang"?, "title"?, "metadata"?} per line), .csv, .tsv or .parquet file',
    )
    for name, default in (("id", "id"), ("text", "text"), ("lang", "lang"), ("title", "title")):
        index.add_argument(
            f"--{name}-column", default=default, help=f"CSV/TSV/Parquet column of the {name} (default: {default})"
        )
    index.add_argument(
        "--passage-tokens",
        type=int,
        help="split documents longer than this many model tokens into passages (default: SEARCH_PASSAGE_TOKENS)",
    )
    index.add_argument(
        "--overlap-tokens",
        type=int,
        help="tokens of whole sentences shared by consecutive passages (default: SEARCH_PASSAGE_OVERLAP_TOKENS)",
    )
    index.add_argument("--strict", action="store_true", help="fail, indexing nothing, if a file cannot be read")
    index.add_argument("--out", type=Path, help="index folder (default: SEARCH_INDEX_DIR)")
    index.add_argument(
        "--model-dir",
        type=Path,
        help="encode with this model folder (default: chosen by the corpus's languages, SEARCH_MODEL_CHOICE)",
    )
    index.add_argument(
        "--index-type",
        choices=["auto", "flat", "hnsw"],
        default="auto",
        help="flat: exact search; hnsw: an approximate graph too (writable, exact scores); auto: the graph once the "
        "index holds 20,000 passages",
    )
    index.add_argument("--batch-size", type=int, default=32)
    index.add_argument(
        "--store",
        choices=["faiss", "milvus"],
        help="build a FAISS index folder or fill a Milvus collection (default: SEARCH_STORE)",
    )
    index.add_argument(
        "--int8",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="encode with the int8 model (default: the model's gated default)",
    )
    index.add_argument(
        "--discard-writes",
        action="store_true",
        help="rebuild even though the index took writes through the documents API (they are not in the corpus); "
        "with Milvus: drop the collection and start over",
    )
    copy = commands.add_parser("copy", help="copy an embedded FAISS index into Milvus (no re-encoding)")
    copy.add_argument("--from", dest="source", type=Path, required=True, help="the index folder to copy")
    copy.add_argument("--batch-size", type=int, default=512)
    for command in (index, copy):
        command.add_argument("--milvus-uri", help="Milvus Lite file or http://host:19530 (default: SEARCH_MILVUS_URI)")
        command.add_argument("--collection", help="Milvus collection (default: SEARCH_MILVUS_COLLECTION)")
    backup = commands.add_parser("backup", help="a verified archive of an index: a live server's or a stopped one's")
    source = backup.add_mutually_exclusive_group(required=True)
    source.add_argument("--server", help="a running server's URL (POST /backup with a write key)")
    source.add_argument("--index-dir", type=Path, help="an index folder no server is writing to")
    backup.add_argument("--key", help="a write key of the server (default: the first of SEARCH_WRITE_API_KEYS)")
    backup.add_argument("--out", type=Path, required=True, help="the archive to write (.tar)")
    restore = commands.add_parser("restore", help="make a verified backup archive the index (server stopped)")
    restore.add_argument("archive", type=Path)
    restore.add_argument("--index-dir", type=Path, help="the index folder to restore (default: SEARCH_INDEX_DIR)")
    restore.add_argument(
        "--model-dir",
        type=Path,
        help="the model the index will be served with (default: SEARCH_MODEL_DIR or SEARCH_ONE_LANGUAGE_MODEL_DIR)",
    )
    restore.add_argument(
        "--replace", action="store_true", help="replace an existing index (moved to <name>.before-restore-<time>)"
    )
    verify = commands.add_parser("verify", help="check an index folder or a backup archive offline")
    verify.add_argument("path", type=Path)
    evaluation = commands.add_parser(
        "eval", help="how well search finds the answers of your judged queries: per model and per query language"
    )
    evaluation.add_argument(
        "data",
        type=Path,
        help="a BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv), or a JSONL file of "
        '{"query", "relevant": [ids] | {id: grade}, "id"?, "lang"?}',
    )
    evaluation.add_argument("--split", default="test", help="BEIR qrels file (default: test)")
    evaluation.add_argument("--qrels", type=Path, help="TREC qrels (query iteration doc relevance) instead")
    evaluation.add_argument("--queries", type=Path, help="with --qrels: the queries, JSONL or TSV (id, text)")
    evaluation.add_argument("--corpus", type=Path, help="the documents (default: the BEIR folder's corpus.jsonl)")
    rankers = evaluation.add_mutually_exclusive_group(required=True)
    rankers.add_argument(
        "--model-dir", type=Path, action="append", help="a model folder; repeat to compare (the first is the baseline)"
    )
    rankers.add_argument("--server", help="a running server's URL: its index is the corpus (e.g. a Milvus deployment)")
    evaluation.add_argument("--api-key", help="with --server: a read key, if the server needs one")
    evaluation.add_argument("--depth", type=int, default=100, help="documents ranked per query (default: 100)")
    evaluation.add_argument("--out", type=Path, default=Path("runs/eval"), help="folder for results.json/.md/.png")
    commands.add_parser("serve", help="serve the API (settings from SEARCH_* environment variables)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("app").setLevel(logging.INFO)
    settings = Settings()
    try:
        if args.command in COMMANDS:
            COMMANDS[args.command](args, settings)
        else:
            serve(settings)
    except (ManifestError, CorpusError, FileNotFoundError, ServiceError, WalError, EvalDataError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
