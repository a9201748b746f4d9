"""X-Request-ID: one id per request, taken from the caller when it is safe, echoed back, put in
every log line (shared/service/logging.py) and forwarded by the resource server to the authorization
server, so one user request can be followed across both services."""

from __future__ import annotations

import re
import uuid

from flask import Flask, Response, g, request

HEADER = "X-Request-ID"
# What we accept from a caller: short and safe to put in logs and a header as is.
_SAFE = re.compile(r"[A-Za-z0-9._-]{1,64}")


def init_app(app: Flask) -> None:
    # Before every request, not only guarded ones, so error responses carry the id too.
    app.before_request(_before_request)
    app.after_request(_echo)


def _before_request() -> None:
    # A before_request hook that returned a value would replace the response.
    _assign()


def current_request_id() -> str:
    """This request's id (assigned on first use when no hook ran, e.g. in a bare test app)."""
    value = g.get("request_id")
    return value if value is not None else _assign()


def is_safe_request_id(value: str) -> bool:
    return _SAFE.fullmatch(value) is not None


def new_request_id() -> str:
    """The id of a request that brought none (or an unsafe one)."""
    return uuid.uuid4().hex


def _assign() -> str:
    incoming = request.headers.get(HEADER)
    value = incoming if incoming and is_safe_request_id(incoming) else new_request_id()
    g.request_id = value
    return value


def _echo(response: Response) -> Response:
    value = g.get("request_id")
    if value is not None:
        response.headers[HEADER] = value
    return response
