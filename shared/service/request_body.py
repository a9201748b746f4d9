"""MAX_REQUEST_BYTES for every request body, with or without Content-Length.

Werkzeug refuses a Content-Length over the limit with 413 before a view reads anything. A
chunked body (Transfer-Encoding: chunked, no Content-Length) it only reads up to the limit and
then reports end of stream: the tail is dropped silently and the request is parsed from the
part that fit (a truncated form, cut JSON). So such a body is read here, before any view, up to
one byte past the limit: over it is the same 413 as for Content-Length, through the service's
own error handler; within it the view reads the buffered copy.
"""

from __future__ import annotations

import io

from flask import Flask, Request, abort, request

_READ_SIZE = 64 * 1024


def limit_request_bodies(app: Flask, max_bytes: int) -> None:
    """Answer 413 to any body over ``max_bytes``; call before other hooks are registered."""
    app.config["MAX_CONTENT_LENGTH"] = max_bytes
    app.before_request(_buffer_unsized_body)


def _buffer_unsized_body() -> None:
    # Runs for every request, and most have no Transfer-Encoding: the cheapest test first, on
    # the request itself rather than through its proxy (`request.x` is three Python calls).
    req: Request = request._get_current_object()  # type: ignore[attr-defined]
    environ = req.environ
    if "HTTP_TRANSFER_ENCODING" not in environ:
        return
    # Only a body the server delimits itself (it dechunks and signals the end with
    # wsgi.input_terminated, as gunicorn and werkzeug do): without that flag Werkzeug reads no
    # body of unknown length at all, and reading the raw input here could block.
    if req.content_length is not None or not environ.get("wsgi.input_terminated"):
        return
    limit = req.max_content_length
    if limit is None:
        return
    stream = environ["wsgi.input"]
    body = bytearray()
    while len(body) <= limit:
        chunk = stream.read(min(_READ_SIZE, limit + 1 - len(body)))
        if not chunk:
            break
        body += chunk
    if len(body) > limit:
        abort(413)
    environ["wsgi.input"] = io.BytesIO(bytes(body))
