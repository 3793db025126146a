"""Request heads. Before: they had no limit (eight unfinished 64 MiB headers took 560 MB; one stalled /health
for seconds) and no time limit. Now the server refuses them early, over real sockets against a real server."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import start_server, stop_server

pytestmark = pytest.mark.e2e
LIMITS = {
    "SEARCH_MAX_HEADER_BYTES": "16384",
    "SEARCH_MAX_HEADERS": "20",
    "SEARCH_HEADER_TIMEOUT_S": "1",
    "SEARCH_BODY_TIMEOUT_S": "1",
    "SEARCH_BODY_DEADLINE_S": "2",
}


@pytest.fixture(scope="module")
def server(tiny_model: Path, tiny_index: Path) -> Iterator[tuple[str, int]]:
    process, base = start_server({"SEARCH_MODEL_DIR": str(tiny_model), "SEARCH_INDEX_DIR": str(tiny_index), **LIMITS})
    try:
        yield base, process.pid
    finally:
        stop_server(process)


def connect(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def send_all_you_can(sock: socket.socket, data: bytes) -> None:
    """Send until the server stops listening (it may refuse and close before the client has sent everything)."""
    try:
        for start in range(0, len(data), 65536):
            sock.sendall(data[start : start + 65536])
    except (BrokenPipeError, ConnectionResetError):
        pass


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_oversized_headers_are_refused_without_buffering_them(server: tuple[str, int]) -> None:
    base, pid = server
    before = rss_mib(pid)
    sockets = [connect(base) for _ in range(8)]
    for sock in sockets:  # eight unfinished 8 MiB headers, as in the report (there: 64 MiB each)
        send_all_you_can(sock, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8 * 2**20)
    for sock in sockets:
        reply = answer(sock)
        assert reply.startswith(b"HTTP/1.1 431 "), reply[:200]
        assert b"over the 16384-byte limit" in reply
        sock.close()
    assert rss_mib(pid) - before < 40  # nothing like 8 x 8 MiB was kept
    started = time.perf_counter()
    assert httpx.get(f"{base}/health").status_code == 200
    assert time.perf_counter() - started < 1


def test_too_many_header_fields_are_refused(server: tuple[str, int]) -> None:
    sock = connect(server[0])
    fields = b"".join(b"X-F%d: v\r\n" % i for i in range(30))
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
    reply = answer(sock)
    assert reply.startswith(b"HTTP/1.1 431 ") and b"more than 20 header fields" in reply


@pytest.mark.parametrize("sent", [b"", b"GET /health HTTP/1.1\r\nHost: x\r\n"], ids=["nothing", "half a head"])
def test_a_head_that_does_not_arrive_in_time_gets_408(server: tuple[str, int], sent: bytes) -> None:
    sock = connect(server[0])
    sock.sendall(sent)
    started = time.perf_counter()
    reply = answer(sock)
    assert reply.startswith(b"HTTP/1.1 408 "), reply[:200]
    assert 0.8 < time.perf_counter() - started < 5


def test_a_stalled_body_gets_408(server: tuple[str, int]) -> None:
    sock = connect(server[0])
    head = b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    sock.sendall(head + b'{"query": ')
    reply = answer(sock)
    assert b" 408 " in reply.split(b"\r\n")[0] and b"request body stalled" in reply, reply[:300]


def test_a_body_dripped_slowly_is_cut_at_the_deadline(server: tuple[str, int]) -> None:
    """One byte every 0.3 s never stalls for the 1 s read timeout; the 2 s deadline for the whole body cuts it."""
    sock = connect(server[0])
    head = b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    sock.sendall(head)
    started = time.perf_counter()
    sock.settimeout(0.3)
    reply = b""
    while not reply and time.perf_counter() - started < 10:
        try:
            sock.sendall(b" ")
            reply = sock.recv(65536)
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
    elapsed = time.perf_counter() - started
    assert b" 408 " in reply.split(b"\r\n")[0] and b"not complete 2 s after" in reply, reply[:300]
    assert 1.8 < elapsed < 4


def test_normal_requests_still_work(server: tuple[str, int]) -> None:
    base = server[0]
    with httpx.Client() as client:  # keep-alive: the second request's head is timed from its own first byte
        assert client.get(f"{base}/health").status_code == 200
        time.sleep(1.5)  # longer than the head timeout, shorter than uvicorn's keep-alive
        padded = '{"query": "Warschau", "top_k": 2' + " " * 200_000 + "}"  # head and body arrive together
        found = client.post(f"{base}/search", content=padded, headers={"Content-Type": "application/json"})
        assert found.status_code == 200 and len(found.json()["results"]) == 2
        assert client.get(f"{base}/health", headers={f"X-F{i}": "v" for i in range(15)}).status_code == 200
