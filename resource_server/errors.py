"""Every error a client of the resource server can see is JSON, never an HTML page.

HTTP errors keep their status and the headers they need (Allow on 405); a database that is
down or a pool that is exhausted is a 503 with Retry-After, since the client did nothing wrong
and can retry. Bearer-token failures never get here: the guard answers those itself.
"""

from __future__ import annotations

import contextlib
import logging
from typing import cast

from flask import Flask, Response, json
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException

from resource_server.db import db
from shared.protocol.oauth_syntax import NO_STORE

log = logging.getLogger("tessera.resource")

_ERROR_CODES = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
}


def _json(status: int, body: dict[str, str], headers: dict[str, str]) -> Response:
    return Response(json.dumps(body), status, {**headers, **NO_STORE}, mimetype="application/json")


def _http_error(exc: HTTPException) -> Response:
    if exc.response is not None:
        # abort(response): already a complete answer (a bearer challenge).
        return cast(Response, exc.response)
    code = exc.code or 500
    body = {"error": _ERROR_CODES.get(code, "server_error")}
    if code == 413:
        body["error_description"] = "The request body is too large"
    elif code < 500 and exc.description:
        body["error_description"] = exc.description
    # Keep what the exception adds (Allow on 405), not its HTML Content-Type.
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    return _json(code, body, headers)


def register_error_handlers(app: Flask, retry_after: int) -> None:
    def database_unavailable(exc: Exception) -> Response:
        # The operator needs the driver's message; the client needs only "retry later".
        log.error("database unavailable: %s", type(exc).__name__, exc_info=exc)
        # A rollback on a dead connection may fail too; the session is discarded at teardown.
        with contextlib.suppress(Exception):
            db.session.rollback()
        body = {
            "error": "temporarily_unavailable",
            "error_description": "The service is temporarily unavailable; retry later",
        }
        return _json(503, body, {"Retry-After": str(retry_after)})

    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(OperationalError, database_unavailable)
    app.register_error_handler(PoolTimeoutError, database_unavailable)
