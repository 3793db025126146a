"""Which model encodes a corpus and its queries: chosen by the corpus's languages at index time, found again by
fingerprint at start-up, overridden by a setting; through the CLI and a real server."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from app.cli import main
from app.manifest import ManifestError, load_index_manifest, load_model_manifest
from app.model_choice import choose_for_corpus, dominant_language, model_for_store
from app.settings import Settings
from tests.conftest import start_server, stop_server
from tests.tiny import demo_records


@pytest.fixture(scope="module")
def german_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's German paragraphs, and one Spanish one (a corpus almost in one language)."""
    rows = [r for r in demo_records() if r["lang"] == "de"][:60] + [r for r in demo_records() if r["lang"] == "es"][:1]
    path = tmp_path_factory.mktemp("corpus") / "de.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def settings(multilingual: Path, one_language: Path, **extra: object) -> Settings:
    return Settings(model_dir=multilingual, one_language_model_dir=one_language, **extra)


def test_dominant_language() -> None:
    assert dominant_language({"de": 60, "es": 1}) == ("de", 60 / 61)
    with pytest.raises(ValueError, match="empty corpus"):
        dominant_language({})


def test_a_corpus_is_indexed_by_its_language_mix_unless_a_setting_says(tiny_model: Path, second_model: Path) -> None:
    both = settings(tiny_model, second_model)
    assert choose_for_corpus(both, {"de": 96, "en": 4}).model_dir == second_model
    several = choose_for_corpus(both, {"de": 90, "en": 10})
    assert several.role == "multilingual" and several.model_dir == tiny_model
    assert "90.0% of the passages are 'de'" in several.reason
    forced = choose_for_corpus(settings(tiny_model, second_model, model_choice="multilingual"), {"de": 100})
    assert forced.model_dir == tiny_model and "SEARCH_MODEL_CHOICE=multilingual" in forced.reason
    assert choose_for_corpus(settings(tiny_model, second_model, one_language_share=0.9), {"de": 9, "en": 1}).role == (
        "one_language"
    )


def test_a_one_language_corpus_without_the_one_language_model_says_how_to_go_on(
    tiny_model: Path, tmp_path: Path
) -> None:
    with pytest.raises(ManifestError, match=r"not built .*SEARCH_MODEL_CHOICE=multilingual"):
        choose_for_corpus(settings(tiny_model, tmp_path / "none"), {"zh": 10})


def test_the_service_finds_the_model_that_encoded_the_store(tiny_model: Path, second_model: Path) -> None:
    both = settings(tiny_model, second_model)
    fingerprints = {path: load_model_manifest(path).fingerprint for path in (tiny_model, second_model)}
    assert model_for_store(both, lambda: fingerprints[second_model]).role == "one_language"
    assert model_for_store(both, lambda: fingerprints[tiny_model]).role == "multilingual"
    assert model_for_store(both, lambda: None).model_dir == tiny_model  # a store that records no model yet
    assert model_for_store(both, lambda: "0" * 64).reason == "no configured model encoded the store"

    def never_read() -> str:
        raise AssertionError("with one model configured there is nothing to choose")

    assert model_for_store(settings(tiny_model, Path("/nonexistent")), never_read).model_dir == tiny_model
    only = settings(tiny_model, second_model, model_choice="one_language")
    assert model_for_store(only, never_read).model_dir == second_model


def test_index_and_serve_a_one_language_corpus_with_the_one_language_model(
    tiny_model: Path, second_model: Path, german_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"SEARCH_MODEL_DIR": str(tiny_model), "SEARCH_ONE_LANGUAGE_MODEL_DIR": str(second_model)}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    index_dir = tmp_path / "index"
    main(["index", "--corpus", str(german_corpus), "--out", str(index_dir)])
    manifest = load_index_manifest(index_dir)
    assert manifest.model_fingerprint == load_model_manifest(second_model).fingerprint
    share = manifest.languages["de"] / manifest.size  # 60 German documents and one Spanish, split into passages
    assert set(manifest.languages) == {"de", "es"} and f"{share:.1%} of the passages are 'de'" in manifest.model_choice

    process, base = start_server({**env, "SEARCH_INDEX_DIR": str(index_dir)})
    try:
        ready = httpx.get(f"{base}/ready").json()
        assert ready["model"] == "tiny-one-language" and ready["model_role"] == "one_language"
        assert "holds embeddings of tiny-one-language" in ready["model_choice"]
        found = httpx.post(f"{base}/search", json={"query": "Warschau", "top_k": 3}).json()["results"]
        assert len(found) == 3 and {hit["lang"] for hit in found} <= {"de", "es"}
    finally:
        stop_server(process)


def test_an_explicit_model_dir_is_used_as_given(
    tiny_model: Path, second_model: Path, german_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEARCH_ONE_LANGUAGE_MODEL_DIR", str(second_model))
    main(["index", "--corpus", str(german_corpus), "--out", str(tmp_path / "i"), "--model-dir", str(tiny_model)])
    assert load_index_manifest(tmp_path / "i").model_fingerprint == load_model_manifest(tiny_model).fingerprint


def test_milvus_takes_the_model_of_the_language_mix_then_keeps_the_one_the_collection_records(
    tiny_model: Path, second_model: Path, german_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.stores.milvus import MilvusStore

    monkeypatch.setenv("SEARCH_MODEL_DIR", str(tiny_model))
    monkeypatch.setenv("SEARCH_ONE_LANGUAGE_MODEL_DIR", str(second_model))
    to_milvus = ["--store", "milvus", "--milvus-uri", str(tmp_path / "milvus.db"), "--collection", "german"]
    main(["index", "--corpus", str(german_corpus), *to_milvus])
    monkeypatch.setenv("SEARCH_ONE_LANGUAGE_SHARE", "1.0")  # the mix alone would now say "several languages"
    main(["index", "--corpus", str(german_corpus), *to_milvus])  # a rerun resumes with the collection's model
    store = MilvusStore(str(tmp_path / "milvus.db"), "german")
    try:
        assert store.read_identity().model_fingerprint == load_model_manifest(second_model).fingerprint
    finally:
        store.close()
