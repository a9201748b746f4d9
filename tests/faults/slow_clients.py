"""Clients that trickle a request one byte at a time (slowloris), on 127.0.0.1 only.

A header trickler sends a request line and then an endless header, byte by byte; a body
trickler sends complete headers announcing a body, then the body byte by byte. Neither ever
finishes within a test: they stop when the `with` block ends.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

# Longer than any test keeps them going (4 KiB at 2 bytes/s: half an hour), shorter than
# gunicorn's limit_request_field_size, so the server never rejects the request as too large.
_HEADER = b"X-Trickle: " + b"a" * 4096
_BODY_BYTES = 4096


def _header_request(port: int, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode() + _HEADER


def _body_request(port: int, path: str) -> tuple[bytes, bytes]:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {_BODY_BYTES}\r\n\r\n"
    ).encode()
    return head, b"x" * _BODY_BYTES


class Tricklers:
    """`count` connections, each sending one byte every `interval` seconds until stopped."""

    def __init__(self, port: int, count: int, interval: float, *, body_path: str | None = None):
        self.port = port
        self.interval = interval
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sent = [0] * count
        self.errors: list[str] = []
        if body_path is None:
            self._head, self._trickled = b"", _header_request(port, "/healthz")
        else:
            self._head, self._trickled = _body_request(port, body_path)
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(count)
        ]

    def _run(self, index: int) -> None:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                if self._head:
                    sock.sendall(self._head)
                for offset in range(len(self._trickled)):
                    sock.sendall(self._trickled[offset : offset + 1])
                    with self._lock:
                        self._sent[index] += 1
                    if self._stop.wait(self.interval):
                        return
        except OSError as exc:
            with self._lock:
                self.errors.append(f"client {index}: {exc!r}")

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def wait_until_each_sent(self, count: int, timeout: float) -> None:
        """Until every client has trickled `count` bytes: all of them are connected and well
        into their request, so a server that gives each one a thread has none left."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self.errors:
                    raise AssertionError(f"slow clients failed: {self.errors[:3]}")
                if min(self._sent) >= count:
                    return
            self._stop.wait(0.05)
        raise AssertionError(f"slow clients did not get going within {timeout} s: {self._sent}")

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    @property
    def still_connected(self) -> bool:
        """No client has lost its connection: the server is still waiting on every one."""
        with self._lock:
            return not self.errors


@contextmanager
def trickling(
    port: int, count: int = 40, interval: float = 0.5, *, body_path: str | None = None
) -> Iterator[Tricklers]:
    clients = Tricklers(port, count, interval, body_path=body_path)
    clients.start()
    try:
        yield clients
    finally:
        clients.stop()
