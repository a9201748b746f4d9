"""How the authorization server answers errors over HTTP: the Flask handlers.

OAuth errors (auth_server/protocol/errors.py) become RFC 6749 §5.2 JSON with
`Cache-Control: no-store`. Everything else (unknown paths, wrong methods, oversized bodies, a
database that is down) is JSON in the same shape, so no client ever parses an HTML error page
or sees a 500 for bad input.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, current_app, json
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException

from auth_server.passwords import PasswordHashingBusy
from auth_server.protocol.errors import (
    InvalidRequestError,
    OAuth2Error,
    TemporarilyUnavailableError,
)
from shared.protocol.oauth_syntax import NO_STORE
from shared.service.settings import ConfigurationError

log = logging.getLogger("tessera.auth")


def error_response(error: OAuth2Error) -> Response:
    status, body, headers = error()
    return Response(json.dumps(body) if isinstance(body, dict) else body, status, headers)


# HTTP errors Werkzeug raises before a view runs, mapped to the nearest RFC 6749 code.
_HTTP_ERROR_CODES = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "invalid_request",
    415: "invalid_request",
}


def _http_error(exc: HTTPException) -> Response:
    code = exc.code or 500
    body = {"error": _HTTP_ERROR_CODES.get(code, "server_error")}
    if code == 413:
        body["error_description"] = "The request body is too large."
    elif exc.description and code < 500:
        body["error_description"] = exc.description
    headers = dict(NO_STORE)
    headers.update((k, v) for k, v in exc.get_headers() if k.lower() == "allow")
    return Response(json.dumps(body), code, headers, mimetype="application/json")


def failure_error(exc: Exception) -> OAuth2Error | None:
    """The error a failure of the database or of the configuration is answered with, logged
    as the operator needs it; None for any other exception (a bug: Flask answers 500). The
    handlers below answer with it, and so does a fast path that met the failure
    (auth_server/client_credentials_wsgi.py)."""
    if isinstance(exc, ConfigurationError):
        # e.g. AUTH_KEY_ENCRYPTION_KEY cannot decrypt the signing keys: the operator must act;
        # the client can only retry later. /readyz reports the same condition.
        log.error("configuration error: %s", exc)
        return TemporarilyUnavailableError("The service is temporarily unavailable.")
    if isinstance(exc, PoolTimeoutError) or (
        isinstance(exc, DBAPIError)
        and (exc.connection_invalidated or isinstance(exc, OperationalError))
    ):
        # The operator needs the driver's message; the client needs only "retry later".
        log.error("database unavailable: %s", exc.__class__.__name__, exc_info=exc)
        return TemporarilyUnavailableError("The service is temporarily unavailable.")
    if isinstance(exc, DataError):
        # Input the database cannot store slipped past validation: still the client's fault.
        log.warning("database rejected request data: %s", exc.orig.__class__.__name__)
        return InvalidRequestError("The request contains invalid characters.")
    return None


def _failure(exc: Exception) -> Response:
    error = failure_error(exc)
    if error is None:
        raise exc
    return error_response(error)


def _hashing_busy(exc: PasswordHashingBusy) -> Response:
    current_app.extensions["tessera"].metrics.count_password_hashing_busy()
    # RFC 6749 §5.2 shape, RFC 9110 §10.2.3 Retry-After: the client retries, nothing queues.
    return error_response(
        TemporarilyUnavailableError(
            "Too many logins are being checked; retry shortly.", retry_after=exc.retry_after
        )
    )


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(PasswordHashingBusy, _hashing_busy)
    app.register_error_handler(ConfigurationError, _failure)
    app.register_error_handler(OAuth2Error, error_response)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(PoolTimeoutError, _failure)
    app.register_error_handler(DBAPIError, _failure)
