"""Kept-alive connections opened at once are shared out between the workers of a service
(shared/service/balanced_worker.py): with gevent's plain accept, one worker often took nearly all of
them (15 of 16) and served alone while the other idled."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from bench.spread import delta, requests_per_worker

pytestmark = pytest.mark.slow

CONNECTIONS = 16
REQUESTS_PER_CONNECTION = 10


def _get_healthz(sock: socket.socket, *, close: bool = False) -> None:
    header = "Connection: close\r\n" if close else ""
    sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: test\r\n{header}\r\n".encode())
    received = b""
    while b'"status"' not in received or not received.rstrip().endswith(b"}"):
        chunk = sock.recv(4096)
        assert chunk, "the server closed a kept-alive connection"
        received += chunk
    assert received.startswith(b"HTTP/1.1 200")


def _wait_until_every_worker_answered(service, workers: int, deadline_s: float = 20) -> None:
    deadline = time.monotonic() + deadline_s
    while len(requests_per_worker(service.env["PROMETHEUS_MULTIPROC_DIR"])) < workers:
        assert time.monotonic() < deadline, "not every worker answered a request"
        with socket.create_connection(("127.0.0.1", service.port), timeout=5) as sock:
            _get_healthz(sock, close=True)


def test_connections_opened_at_once_are_split_evenly_between_two_workers(gunicorn_auth):
    auth = gunicorn_auth(workers=2)
    metrics_dir = auth.server.env["PROMETHEUS_MULTIPROC_DIR"]
    _wait_until_every_worker_answered(auth.server, workers=2)
    before = requests_per_worker(metrics_dir)

    start = threading.Barrier(CONNECTIONS)
    all_open = threading.Barrier(CONNECTIONS)
    failures: list[BaseException] = []

    def client() -> None:
        try:
            start.wait(timeout=10)
            with socket.create_connection(("127.0.0.1", auth.server.port), timeout=10) as sock:
                _get_healthz(sock)
                # Every connection stays open until all are: none is freed for another to reuse.
                all_open.wait(timeout=20)
                for _ in range(REQUESTS_PER_CONNECTION - 1):
                    _get_healthz(sock)
        except BaseException as exc:  # reported below, on the test's thread
            failures.append(exc)
            all_open.abort()

    threads = [threading.Thread(target=client) for _ in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures

    per_worker = delta(before, requests_per_worker(metrics_dir))
    connections = sorted(count / REQUESTS_PER_CONNECTION for count in per_worker.values())
    assert sum(connections) == CONNECTIONS, per_worker
    # Even is 8/8. gevent's plain accept gave 15/1, 16/0, 14/2 in three runs of this test;
    # on a machine loaded far beyond its cores a worker may not get the CPU within
    # MAX_DEFER_S, and 11/5 was seen then: the bound tells the two apart.
    assert len(connections) == 2 and connections[0] >= 4, per_worker


def _read_response(sock: socket.socket) -> bytes:
    received = b""
    while not received.rstrip().endswith(b"}"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        received += chunk
    return received


def test_a_kept_alive_connection_is_closed_after_its_hundredth_request(gunicorn_auth):
    """So long-lived client pools are spread again over the workers from time to time."""
    auth = gunicorn_auth(workers=2)
    with socket.create_connection(("127.0.0.1", auth.server.port), timeout=10) as sock:
        for number in range(1, 101):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
            head = _read_response(sock).split(b"\r\n\r\n")[0].lower().split(b"\r\n")
            assert head[0].startswith(b"http/1.1 200")
            assert (b"connection: close" in head) == (number == 100), number
        assert sock.recv(1) == b""  # the server closed it
