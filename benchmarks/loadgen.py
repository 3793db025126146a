"""A bounded loopback load generator: N concurrent clients, a request cap and a time cap, latency percentiles.

aiohttp rather than httpx as the client: on a 2-core machine the client shares the cores with the server, and
aiohttp spends about a third of httpx's CPU per request, so the figures say more about the server.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np


@dataclass
class LoadResult:
    concurrency: int
    seconds: float
    latencies_ms: list[float]
    statuses: Counter = field(default_factory=Counter)  # HTTP status, or the exception's name
    first_error: str = ""

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 200)

    @property
    def qps(self) -> float:
        return self.statuses[200] / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    def row(self) -> dict:
        return {
            "concurrency": self.concurrency,
            "requests": self.requests,
            "errors": self.errors,
            "qps": round(self.qps, 1),
            "p50_ms": round(self.percentile(50), 1),
            "p95_ms": round(self.percentile(95), 1),
            "p99_ms": round(self.percentile(99), 1),
        }


async def _run(
    url: str, payloads: list[dict], concurrency: int, max_requests: int, max_seconds: float, headers: dict | None
) -> LoadResult:
    result = LoadResult(concurrency, 0.0, [])
    issued = 0
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as session:
        started = time.perf_counter()
        deadline = started + max_seconds

        async def client() -> None:
            nonlocal issued
            while issued < max_requests and time.perf_counter() < deadline:
                payload = payloads[issued % len(payloads)]
                issued += 1
                sent = time.perf_counter()
                try:
                    async with session.post(url, json=payload) as response:
                        body = await response.read()
                        status: int | str = response.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    status, body = type(exc).__name__, str(exc).encode()
                result.statuses[status] += 1
                if status == 200:
                    result.latencies_ms.append((time.perf_counter() - sent) * 1000)
                elif not result.first_error:
                    result.first_error = f"{status}: {body[:300]!r}"

        await asyncio.gather(*(client() for _ in range(concurrency)))
        result.seconds = time.perf_counter() - started
    return result


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(pid: int, url: str, payloads: list[dict], concurrency: int, seconds: float) -> tuple[LoadResult, float]:
    """``run_load`` for ``seconds`` at most, and the cores the server process ``pid`` used meanwhile."""
    before, started = cpu_seconds(pid), time.perf_counter()
    result = run_load(url, payloads, concurrency, 10**6, seconds)
    return result, (cpu_seconds(pid) - before) / (time.perf_counter() - started)


def wait_until_up(process: subprocess.Popen, url: str, what: str, timeout_s: float) -> None:
    """Poll ``url`` until it answers 200; fail if ``process`` exits first or ``timeout_s`` passes."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{what} did not start within {timeout_s:g} s")


def run_load(
    url: str,
    payloads: list[dict],
    concurrency: int,
    max_requests: int,
    max_seconds: float = 60,
    headers: dict | None = None,
) -> LoadResult:
    """POST payloads (round robin) from ``concurrency`` clients until ``max_requests`` or ``max_seconds``."""
    return asyncio.run(_run(url, payloads, concurrency, max_requests, max_seconds, headers))
