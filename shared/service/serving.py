"""What each gunicorn worker puts between its connections and the app (gunicorn.conf.py).

The gevent worker gives every connection a greenlet, so a client that trickles its request
costs one greenlet and holds nobody up. Left at that, though, a worker would also run as many
requests inside the app at once as clients send: 50 concurrent token requests on one worker
would want 50 database connections from a pool of 15, and a request that needs a second
connection while others hold the rest waits out DB_POOL_TIMEOUT (503). So the app gets a
fixed number of slots per worker, as gthread's threads gave it, and a request takes one only
once its whole body has arrived: reading a slow body, or writing the response to a slow
reader, happens outside the slots.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterable
from typing import Any

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class BufferedApp:
    """`app` behind `slots` concurrent requests, each admitted with its body already read."""

    def __init__(self, app: WSGIApp, *, slots: int, max_body: int) -> None:
        self.app = app
        self.max_body = max_body
        # gevent-aware once the worker has monkey-patched threading (it does before loading
        # the app); a plain semaphore under any other worker.
        self._slots = threading.BoundedSemaphore(slots)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        self._read_body(environ)
        with self._slots:
            result = self.app(environ, start_response)
            try:
                # The services answer with small JSON or HTML pages, never a stream: the body
                # is collected in the slot and written after it.
                return list(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()

    def _read_body(self, environ: dict[str, Any]) -> None:
        length = environ.get("CONTENT_LENGTH")
        if length:
            try:
                expected = int(length)
            except ValueError:
                return  # the app answers 400
            if expected > self.max_body:
                return  # the app answers 413 from the header alone, without reading
        elif environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
            # Read one byte past the limit at most: the app then answers 413 itself.
            expected = self.max_body + 1
        else:
            return
        body = _read_up_to(environ["wsgi.input"], expected)
        # Short if the client went away mid-body: the app sees the same short stream (400).
        environ["wsgi.input"] = io.BytesIO(body)


def _read_up_to(stream: Any, size: int) -> bytes:
    parts, remaining = [], size
    while remaining > 0:
        chunk = stream.read(min(remaining, 64 * 1024))
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)
