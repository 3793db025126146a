"""The documents API over real HTTP, on both stores: keys, upsert/get/delete, immediate visibility (read-your-write;
Milvus at its default Strong consistency), and bad writes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import running_server, writable_server_env

pytestmark = pytest.mark.e2e
WRITE = {"Authorization": "Bearer write-key"}


@pytest.fixture(scope="module")
def server(store: str, tiny_model: Path, tiny_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = writable_server_env(
        tiny_model,
        tiny_index,
        tmp_path_factory.mktemp("docs"),
        store,
        SEARCH_WRITE_API_KEYS="write-key,other-write-key",
        SEARCH_MAX_DOCUMENTS_PER_REQUEST="8",
        SEARCH_MAX_DOCUMENT_CHARS="500",
    )
    with running_server(env) as base:
        yield base


def doc(doc_id: str, text: str = "Ein neuer Absatz über Warschau", **metadata: object) -> dict:
    return {"id": doc_id, "text": text, "lang": "de", "metadata": metadata}


def test_upsert_is_searchable_at_once_then_get_and_delete(server: str) -> None:
    size = httpx.get(f"{server}/ready").json()["index_size"]
    answer = httpx.post(
        f"{server}/documents", json={"documents": [doc("api/new-1", source="api"), doc("api/new-2")]}, headers=WRITE
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["ids"] == ["api/new-1", "api/new-2"] and answer.json()["index_size"] == size + 2
    hits = httpx.post(
        f"{server}/search", json={"query": "Ein neuer Absatz über Warschau", "filters": {"source": "api"}}
    ).json()["results"]
    assert [h["id"] for h in hits] == ["api/new-1"]
    got = httpx.get(f"{server}/documents/api/new-1").json()
    assert got == {
        "id": "api/new-1",
        "text": "Ein neuer Absatz über Warschau",
        "lang": "de",
        "metadata": {"source": "api"},
    }
    replaced = httpx.post(f"{server}/documents", json={"documents": [doc("api/new-1", "Anderer Text")]}, headers=WRITE)
    assert replaced.json()["index_size"] == size + 2
    assert httpx.get(f"{server}/documents/api/new-1").json()["text"] == "Anderer Text"
    deleted = httpx.delete(f"{server}/documents/api/new-1", headers=WRITE)
    assert deleted.json() == {"deleted": "api/new-1", "passages": 1, "index_size": size + 1}
    assert httpx.get(f"{server}/documents/api/new-1").status_code == 404
    assert httpx.delete(f"{server}/documents/api/new-1", headers=WRITE).status_code == 404


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({}, 401, "writes need an API key"),
        ({"Authorization": "Basic d3JpdGU6a2V5"}, 401, "writes need an API key"),
        ({"Authorization": "Bearer wrong"}, 403, "may not write"),
        ({"Authorization": "Bearer other-write-key"}, 200, ""),
    ],
)
def test_writes_need_a_write_key(server: str, headers: dict, status: int, message: str) -> None:
    answer = httpx.post(f"{server}/documents", json={"documents": [doc("auth-probe")]}, headers=headers)
    assert answer.status_code == status, answer.text
    if status == 401:
        assert answer.headers["www-authenticate"] == "Bearer"
    assert message in answer.text
    assert httpx.delete(f"{server}/documents/auth-probe", headers=headers).status_code in (status, 404)


def test_reads_are_open_without_read_keys(server: str) -> None:
    assert httpx.post(f"{server}/search", json={"query": "x"}).status_code == 200
    assert httpx.get(f"{server}/documents/xquad-p000-en").status_code == 200


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"documents": []}, "documents: List should have at least 1 item"),
        ({"documents": [doc(f"d{i}") for i in range(9)]}, "9 documents in one request; the limit is 8"),
        ({"documents": [doc("twice"), doc("twice")]}, "duplicate id 'twice' in one request"),
        ({"documents": [doc("has space")]}, "documents.0.id: String should match pattern"),
        ({"documents": [doc("")]}, "documents.0.id: String should match pattern"),
        ({"documents": [doc("x" * 257)]}, "documents.0.id: String should match pattern"),
        ({"documents": [doc("ok", "   ")]}, "text must not be empty or whitespace"),
        ({"documents": [doc("ok", "y" * 501)]}, "document 0 is 501 characters long; the limit is 500"),
        ({"documents": [doc("ok", "wort " * 80)], "split": False}, 'tokens long .* send "truncate": true'),
        ({"documents": [{**doc("ok"), "lang": "German"}]}, "documents.0.lang: .*'German' is not a language tag"),
        ({"documents": [{**doc("ok"), "lang": "zz"}]}, "documents.0.lang: .*'zz' is not the tag of a known language"),
        ({"documents": [{**doc("ok"), "metadata": "x"}]}, "documents.0.metadata: Input should be a valid dictionary"),
        ({"documents": [{**doc("ok"), "extra": 1}]}, "documents.0.extra: Extra inputs are not permitted"),
        ({"documents": [doc("ok", blob="z" * 5000)]}, "metadata is 5011 bytes as JSON; the limit is 4096"),
        ({"documents": [doc("ok")], "upsert": True}, "upsert: Extra inputs are not permitted"),
    ],
)
def test_bad_writes_get_a_clear_422(server: str, payload: dict, message: str) -> None:
    import re

    answer = httpx.post(f"{server}/documents", json=payload, headers=WRITE)
    assert answer.status_code == 422, answer.text
    assert re.search(message, answer.json()["detail"]), answer.json()["detail"]


def test_over_long_documents_are_truncated_only_when_asked(server: str) -> None:
    long = doc("long-one", "wort " * 80)
    body = {"documents": [long], "split": False, "truncate": True}
    answer = httpx.post(f"{server}/documents", json=body, headers=WRITE)
    assert answer.status_code == 200, answer.text
    assert httpx.get(f"{server}/documents/long-one").json()["text"] == long["text"]  # stored whole


def test_a_long_document_is_split_replaced_whole_and_deleted_whole(server: str) -> None:
    sentences = " ".join(f"Satz {i} über den Rhein." for i in range(18))  # within the 500 characters
    untagged = {key: value for key, value in doc("long-doc", sentences).items() if key != "lang"}
    answer = httpx.post(f"{server}/documents", json={"documents": [untagged]}, headers=WRITE)
    assert answer.status_code == 200, answer.text
    written = answer.json()
    assert written["ids"] == ["long-doc"] and written["passages"] > 2
    assert written["passage_ids"] == [f"long-doc#{n}" for n in range(written["passages"])]
    first = httpx.get(f"{server}/documents/long-doc%230").json()
    assert first["text"] == sentences[first["metadata"]["start"] : first["metadata"]["end"]]
    assert first["metadata"]["doc_id"] == "long-doc" and first["metadata"]["chunk"] == 0 and first["lang"] == "de"
    assert first["metadata"]["lang_detected"] is True
    size = written["index_size"]
    shorter = httpx.post(
        f"{server}/documents", json={"documents": [doc("long-doc", "Nur noch ein Satz.")]}, headers=WRITE
    )
    assert shorter.json()["passage_ids"] == ["long-doc"]  # the old passages went in the same write
    assert shorter.json()["index_size"] == size - written["passages"] + 1
    assert httpx.get(f"{server}/documents/long-doc%231").status_code == 404
    httpx.post(f"{server}/documents", json={"documents": [doc("long-doc", sentences)]}, headers=WRITE)
    deleted = httpx.delete(f"{server}/documents/long-doc", headers=WRITE).json()
    assert deleted["passages"] == written["passages"] and deleted["index_size"] == size - written["passages"]


def test_get_refuses_invalid_ids(server: str) -> None:
    assert httpx.get(f"{server}/documents/bad%20id").status_code == 422
    assert httpx.get(f"{server}/documents/{'x' * 300}").status_code == 422


def test_new_documents_join_their_group_and_lists_cannot_group(server: str) -> None:
    text = "Die Normandie ist eine Region im Norden Frankreichs."
    answer = httpx.post(f"{server}/documents", json={"documents": [doc("grp/de", text, group="p010")]}, headers=WRITE)
    assert answer.status_code == 200, answer.text
    body = httpx.post(f"{server}/search", json={"query": text, "top_k": 1, "group_by": "group", "group_size": 20})
    (top,) = body.json()["results"]
    assert top["group"] == "p010" and top["id"] == "grp/de" and "grp/de" in [m["id"] for m in top["members"]]

    odd = {"documents": [doc("grp/list", text, group=["p010", "p011"])]}
    assert httpx.post(f"{server}/documents", json=odd, headers=WRITE).status_code == 200
    refused = httpx.post(f"{server}/search", json={"query": text, "group_by": "group"})
    assert refused.status_code == 422 and "hold a list or object" in refused.json()["detail"]
    for doc_id in ("grp/de", "grp/list"):
        assert httpx.delete(f"{server}/documents/{doc_id}", headers=WRITE).status_code == 200
    assert httpx.post(f"{server}/search", json={"query": text, "group_by": "group"}).status_code == 200


def test_a_file_is_read_split_and_written(server: str) -> None:
    page = (
        b"<html><head><title>Rhein</title><script>track()</script></head><body><nav>Menu Hilfe</nav>"
        + (
            "<main>" + "".join(f"<p>Abschnitt {i} handelt vom Rhein bei Basel.</p>" for i in range(8)) + "</main>"
        ).encode()
        + b"<footer>Impressum</footer></body></html>"
    )
    answer = httpx.post(
        f"{server}/documents/file", params={"id": "web/rhein.html"}, content=page,
        headers={**WRITE, "Content-Type": "text/html; charset=utf-8"},
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    written = answer.json()
    assert written["ids"] == ["web/rhein.html"] and written["passages"] >= 2
    first = httpx.get(f"{server}/documents/{written['passage_ids'][0].replace('#', '%23')}").json()
    assert first["metadata"]["title"] == "Rhein" and first["metadata"]["format"] == "html"
    assert "Menu" not in first["text"] and "track" not in first["text"] and first["lang"] == "de"
    assert httpx.delete(f"{server}/documents/web/rhein.html", headers=WRITE).json()["passages"] == written["passages"]


@pytest.mark.parametrize(
    ("content_type", "content", "status", "message"),
    [
        ("application/msword", b"\xd0\xcf\x11\xe0", 415, "Content-Type 'application/msword' is not a file type"),
        (None, b"plain bytes", 415, "Content-Type '(none)'"),
        ("application/pdf", b"%PDF-1.4 not really", 422, "the file cannot be read: "),
        ("text/plain", "caf\xe9".encode("latin-1"), 422, "not UTF-8"),
        ("text/html", b"<html><body><nav>only a menu</nav></body></html>", 422, "holds no text"),
        ("text/plain", b"x" * 501, 422, "document 0 is 501 characters long; the limit is 500"),
    ],
)
def test_bad_files_get_a_clear_4xx(
    server: str, content_type: str | None, content: bytes, status: int, message: str
) -> None:
    headers = {**WRITE, **({"Content-Type": content_type} if content_type else {})}
    answer = httpx.post(f"{server}/documents/file", params={"id": "bad-file"}, content=content, headers=headers)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["detail"]


def test_count_scroll_and_delete_many_by_id_and_by_filter(server: str) -> None:
    documents = [
        doc(f"bulk/{i}", f"Ein Absatz Nummer {i}", batch="bulk", n=i, day=f"2024-05-0{1 + i % 3}") for i in range(8)
    ]
    assert httpx.post(f"{server}/documents", json={"documents": documents}, headers=WRITE).status_code == 200
    size = httpx.get(f"{server}/ready").json()["index_size"]

    def count(**body: object) -> int:
        answer = httpx.post(f"{server}/documents/count", json=body)
        assert answer.status_code == 200, answer.text
        return answer.json()["count"]

    assert count() == size and count(filters={"batch": "bulk"}) == 8
    assert count(filters={"batch": "bulk", "day": {"$gte": "2024-05-02T00:00:00Z"}}) == 5
    assert count(filters={"batch": "bulk"}, languages=["en"]) == 0
    listed, cursor = [], None
    while True:
        page = httpx.post(
            f"{server}/documents/scroll", json={"filters": {"batch": "bulk"}, "limit": 3, "cursor": cursor}
        )
        assert page.status_code == 200, page.text
        listed += page.json()["documents"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert [d["id"] for d in listed] == sorted(d["id"] for d in documents)
    assert listed[0]["metadata"]["batch"] == "bulk" and listed[0]["text"].startswith("Ein Absatz")

    by_id = httpx.post(f"{server}/documents/delete", json={"ids": ["bulk/0", "bulk/1", "bulk/none"]}, headers=WRITE)
    assert by_id.status_code == 200, by_id.text
    assert by_id.json() == {"passages": 2, "passage_ids": ["bulk/0", "bulk/1"], "index_size": size - 2}
    by_filter = httpx.post(
        f"{server}/documents/delete", json={"filters": {"batch": "bulk", "n": {"$lt": 5}}}, headers=WRITE
    )
    assert by_filter.json() == {"passages": 3, "passage_ids": None, "index_size": size - 5}
    assert count(filters={"batch": "bulk"}) == 3
    assert httpx.post(f"{server}/documents/delete", json={"filters": {"batch": "bulk"}}).status_code == 401


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "give either ids, or a non-empty filters and/or languages"),
        ({"filters": {}}, "give either ids, or a non-empty filters"),
        ({"ids": ["a"], "filters": {"n": 1}}, "give either ids, or"),
        ({"filters": {"n": {"$lt": "later"}}}, "filters.n.$lt: a range takes"),
        ({"languages": ["zu"]}, "unknown language(s) ['zu']; the index has"),
    ],
)
def test_bad_bulk_deletes_get_a_422(server: str, body: dict, message: str) -> None:
    answer = httpx.post(f"{server}/documents/delete", json=body, headers=WRITE)
    assert answer.status_code == 422 and message in answer.json()["detail"], answer.text
