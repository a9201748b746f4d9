"""urllib3 connection pools whose calls end at a deadline, however slowly the peer answers.

Connect and read timeouts (urllib3's, and so requests') bound each socket operation, not the
call: a peer that sends its answer one byte per second never trips a 2-second read timeout and
holds the caller for as long as it likes. A connection of these pools reads the response (status
line, headers and body) through a reader that gives every ``recv`` only the time left until the
deadline set with ``deadline()``, and raises ``socket.timeout`` once it has passed, which urllib3
reports as ``ReadTimeoutError`` like any other read timeout.
"""

from __future__ import annotations

import http.client
import io
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import certifi
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.util import parse_url

# A context variable, not an attribute: urllib3 picks the pooled connection inside urlopen(),
# and each thread (or greenlet) of a worker has its own call in flight.
_deadline: ContextVar[float | None] = ContextVar("tessera_http_deadline", default=None)


@contextmanager
def deadline(at: float) -> Iterator[None]:
    """Reads of a deadline pool's responses inside this block end by ``at`` (time.monotonic)."""
    token = _deadline.set(at)
    try:
        yield
    finally:
        _deadline.reset(token)


class _DeadlineReader(socket.SocketIO):
    """socket.makefile()'s raw stream, whose every read waits at most until the deadline."""

    def __init__(self, sock: socket.socket, at: float) -> None:
        super().__init__(sock, "rb")
        self._at = at

    def readinto(self, buffer: Any) -> int | None:
        left = self._at - time.monotonic()
        if left <= 0:
            raise TimeoutError("the deadline of this call has passed")
        sock = self._sock  # type: ignore[attr-defined]
        timeout = sock.gettimeout()
        sock.settimeout(left if timeout is None else min(timeout, left))
        try:
            return super().readinto(buffer)
        finally:
            sock.settimeout(timeout)


class _DeadlineSocket:
    """What http.client.HTTPResponse gets instead of the socket: it only calls makefile()."""

    def __init__(self, sock: socket.socket, at: float | None) -> None:
        self._sock = sock
        self._at = at

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> Any:
        if self._at is None or not isinstance(self._sock, socket.socket):
            # No deadline set, or not a plain (or TLS) socket: urllib3's TLS-in-TLS transport.
            return self._sock.makefile(mode, *args, **kwargs)  # type: ignore[call-overload]
        # As socket.makefile does: the reference keeps the socket open while the response is
        # read, even after http.client closes its connection (Connection: close).
        self._sock._io_refs += 1  # type: ignore[attr-defined]
        return io.BufferedReader(_DeadlineReader(self._sock, self._at))


class _DeadlineResponse(http.client.HTTPResponse):
    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
        super().__init__(_DeadlineSocket(sock, _deadline.get()), *args, **kwargs)  # type: ignore[arg-type]


# A request whose body is at most this is written with one send, headers and body together.
_COALESCE_MAX_BYTES = 64 * 1024


class _OneWriteRequests:
    """urllib3 writes a request's headers and its body with two sends: two TCP segments and
    two wake-ups of the server for a 100-byte introspection form. A body given as bytes (the
    introspection client's, a token request's) goes out with its headers in one send."""

    _held: list[bytes] | None = None

    def request(self, method: str, url: str, body: Any = None, *args: Any, **kwargs: Any) -> None:
        if not isinstance(body, bytes) or len(body) > _COALESCE_MAX_BYTES:
            super().request(method, url, body, *args, **kwargs)  # type: ignore[misc]
            return
        self._held = []
        try:
            super().request(method, url, body, *args, **kwargs)  # type: ignore[misc]
            held, self._held = self._held, None
            super().send(b"".join(held))  # type: ignore[misc]
        finally:
            self._held = None

    def send(self, data: Any) -> None:
        if self._held is not None and isinstance(data, bytes):
            self._held.append(data)
        else:
            super().send(data)  # type: ignore[misc]


class _DeadlineHTTPConnection(_OneWriteRequests, HTTPConnection):
    response_class = _DeadlineResponse


class _DeadlineHTTPSConnection(_OneWriteRequests, HTTPSConnection):
    response_class = _DeadlineResponse


class _DeadlineHTTPPool(HTTPConnectionPool):
    ConnectionCls = _DeadlineHTTPConnection


class _DeadlineHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection


def deadline_pool_classes() -> dict[str, type[HTTPConnectionPool]]:
    """urllib3 PoolManager.pool_classes_by_scheme for pools of these connections (requests)."""
    return {"http": _DeadlineHTTPPool, "https": _DeadlineHTTPSPool}


def deadline_pool(url: str, pool_size: int = 10, verify: bool | str = True) -> HTTPConnectionPool:
    """A keep-alive pool to the host of ``url`` that never retries or redirects by itself and
    takes nothing from the environment (no proxies). ``verify``: True checks TLS against
    certifi's CA bundle (as requests does), a path against that bundle, False not at all."""
    parts = parse_url(url)
    if parts.host is None:
        raise ValueError(f"no host in the URL {url!r}")
    options: dict[str, Any] = {"maxsize": pool_size, "block": False, "retries": False}
    if parts.scheme == "https":
        if verify is False:
            options.update(cert_reqs="CERT_NONE", assert_hostname=False)
        else:
            ca_certs = verify if isinstance(verify, str) else certifi.where()
            options.update(cert_reqs="CERT_REQUIRED", ca_certs=ca_certs)
        return _DeadlineHTTPSPool(parts.host, parts.port, **options)
    if parts.scheme == "http":
        return _DeadlineHTTPPool(parts.host, parts.port, **options)
    raise ValueError(f"not an http or https URL: {url!r}")
