"""A small closed-loop HTTP load generator: P processes x C keep-alive connections each send
one request after another for D seconds; reports throughput and latency percentiles.

Python, not wrk, so it runs wherever the tests run; every scenario of one benchmark run uses
the same generator, and results are read as ratios against a baseline from the same run.
"""

from __future__ import annotations

import http.client
import multiprocessing as mp
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class Result:
    requests: int
    errors: int
    statuses: dict[int, int]
    seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def _worker(request: Request, connections: int, seconds: float, queue) -> None:
    import threading

    parts = urlsplit(request.url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    headers = dict(request.headers)
    if request.body is not None:
        headers.setdefault("Content-Length", str(len(request.body)))
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = [0]
    deadline = time.perf_counter() + seconds

    def loop():
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
        local: list[float] = []
        local_status: dict[int, int] = {}
        local_errors = 0
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                conn.request(request.method, path, body=request.body, headers=headers)
                response = conn.getresponse()
                response.read()
                local_status[response.status] = local_status.get(response.status, 0) + 1
                local.append((time.perf_counter() - started) * 1000)
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException):
                local_errors += 1
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
        with lock:
            latencies.extend(local)
            errors[0] += local_errors
            for status, count in local_status.items():
                statuses[status] = statuses.get(status, 0) + count

    threads = [threading.Thread(target=loop) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.put((latencies, statuses, errors[0]))


def run(
    request: Request, *, processes: int = 2, connections: int = 8, seconds: float = 10.0
) -> Result:
    queue = mp.get_context("fork").Queue()
    started = time.perf_counter()
    workers = [
        mp.get_context("fork").Process(target=_worker, args=(request, connections, seconds, queue))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    parts = [queue.get() for _ in workers]
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    latencies = [latency for part in parts for latency in part[0]]
    statuses: dict[int, int] = {}
    for _, part_statuses, _ in parts:
        for status, count in part_statuses.items():
            statuses[status] = statuses.get(status, 0) + count
    return Result(
        requests=len(latencies),
        errors=sum(part[2] for part in parts),
        statuses=statuses,
        seconds=min(elapsed, seconds) if latencies else elapsed,
        latencies_ms=latencies,
    )
