"""Every error a client of the authorization server can see, in one place.

OAuth endpoints answer RFC 6749 §5.2 errors: a JSON object with `error` (and
`error_description`), `Cache-Control: no-store`, and for `invalid_client` after an HTTP Basic
attempt, 401 with `WWW-Authenticate: Basic` (Authlib's InvalidClientError does that part).
Everything else (unknown paths, wrong methods, oversized bodies, a database that is down) is
JSON in the same shape, so no client ever parses an HTML error page or sees a 500 for bad input.
"""

from __future__ import annotations

import logging

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749.errors import (
    AccessDeniedError,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    UnauthorizedClientError,
    UnsupportedGrantTypeError,
    UnsupportedResponseTypeError,
    UnsupportedTokenTypeError,
)
from flask import Flask, Response, current_app, json
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException

from auth_server.passwords import PasswordHashingBusy
from shared.protocol.oauth_syntax import NO_STORE
from shared.service.settings import ConfigurationError

__all__ = [
    "AccessDeniedError",
    "InvalidClientError",
    "InvalidDPoPProofError",
    "InvalidGrantError",
    "InvalidRequestError",
    "InvalidScopeError",
    "InvalidTargetError",
    "LoginRequiredError",
    "OAuth2Error",
    "TemporarilyUnavailableError",
    "TooManyRequestsError",
    "UnauthorizedClientError",
    "UserScopeError",
    "UnsupportedGrantTypeError",
    "UnsupportedResponseTypeError",
    "UnsupportedTokenTypeError",
    "UseDPoPNonceError",
    "error_response",
    "register_error_handlers",
]

log = logging.getLogger("tessera.auth")

DATABASE_RETRY_AFTER = 5


class InvalidTargetError(OAuth2Error):
    """RFC 8707 §2: the requested resource is invalid, unknown, or not allowed for this client."""

    error = "invalid_target"


class InvalidDPoPProofError(OAuth2Error):
    """RFC 9449 §5: the DPoP proof of a token request is missing where needed, malformed,
    stale, replayed or for another request."""

    error = "invalid_dpop_proof"


class UseDPoPNonceError(OAuth2Error):
    """RFC 9449 §8: the proof must carry the server's nonce, sent in the DPoP-Nonce header."""

    error = "use_dpop_nonce"

    def __init__(self, nonce: str, description: str | None = None):
        super().__init__(description=description)
        self.nonce = nonce

    def get_headers(self):
        return [*super().get_headers(), ("DPoP-Nonce", self.nonce)]


class UserScopeError(InvalidScopeError):
    """The client may have the requested scope, but the user (User.allowed_scopes) may not
    grant it. At the token endpoint this is invalid_scope (RFC 6749 §5.2: the scope "exceeds
    the scope granted by the resource owner"); the authorization endpoint answers
    access_denied instead (§4.1.2.1: the request was denied, not malformed)."""


class LoginRequiredError(OAuth2Error):
    """OpenID Connect Core §3.1.2.6, used by OAuth servers too: `prompt=none` was asked, and
    the user would have to log in (here, always: there is no single sign-on session)."""

    error = "login_required"


class AuthorizationPageError(Exception):
    """An authorization request whose client_id or redirect_uri cannot be trusted: the user
    gets an error page and is never redirected (RFC 6749 §4.1.2.1)."""

    def __init__(self, description: str, status_code: int = 400):
        super().__init__(description)
        self.description = description
        self.status_code = status_code


class TemporarilyUnavailableError(OAuth2Error):
    """The server cannot answer now (its database is down); the client should retry later."""

    error = "temporarily_unavailable"
    status_code = 503

    def __init__(self, description=None, retry_after: int = DATABASE_RETRY_AFTER):
        super().__init__(description=description)
        self.retry_after = retry_after

    def get_headers(self):
        return [*super().get_headers(), ("Retry-After", str(self.retry_after))]


class TooManyRequestsError(OAuth2Error):
    """Login throttling (RFC 6585 §4): 429 with Retry-After, before any password is hashed."""

    error = "invalid_request"
    status_code = 429

    def __init__(self, description=None, retry_after: int = 60):
        super().__init__(description=description)
        self.retry_after = max(1, int(retry_after))

    def get_headers(self):
        return [*super().get_headers(), ("Retry-After", str(self.retry_after))]


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
