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


def _database_unavailable(exc: Exception) -> Response:
    # The operator needs the driver's message; the client needs only "retry later".
    log.error("database unavailable: %s", exc.__class__.__name__, exc_info=exc)
    return error_response(TemporarilyUnavailableError("The service is temporarily unavailable."))


def _database_error(exc: DBAPIError) -> Response:
    if exc.connection_invalidated or isinstance(exc, OperationalError):
        return _database_unavailable(exc)
    if isinstance(exc, DataError):
        # Input the database cannot store slipped past validation: still the client's fault.
        log.warning("database rejected request data: %s", exc.orig.__class__.__name__)
        return error_response(InvalidRequestError("The request contains invalid characters."))
    raise exc


def _misconfigured(exc: ConfigurationError) -> Response:
    # e.g. AUTH_KEY_ENCRYPTION_KEY cannot decrypt the signing keys: the operator must act;
    # the client can only retry later. /readyz reports the same condition.
    log.error("configuration error: %s", exc)
    return error_response(TemporarilyUnavailableError("The service is temporarily unavailable."))


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
    app.register_error_handler(ConfigurationError, _misconfigured)
    app.register_error_handler(OAuth2Error, error_response)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(PoolTimeoutError, _database_unavailable)
    app.register_error_handler(DBAPIError, _database_error)
