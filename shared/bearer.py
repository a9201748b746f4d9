"""RFC 6750 bearer tokens: read one from a request and answer the §3 challenge when it fails.

Only the Authorization request header field (§2.1) is accepted. A token that also arrives as an
``access_token`` form or query parameter is a request that uses more than one method, which
clients MUST NOT do (§2), so it gets ``invalid_request``. Every failure is a ``BearerError``;
``challenge_response`` turns it into the response §3 describes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from flask import Request, Response

MAX_TOKEN_LENGTH = 8192

INVALID_REQUEST = "invalid_request"
INVALID_TOKEN = "invalid_token"
INSUFFICIENT_SCOPE = "insufficient_scope"

# Both RFC 6749 §5.2 and RFC 6750 §3 restrict the description to these characters, so it can
# sit inside a quoted-string without escaping: no double quote, no backslash, no controls.
_DESCRIPTION = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")
# RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class BearerError(Exception):
    """Why a request did not get through; ``error`` is None for a request with no credentials."""

    def __init__(
        self,
        status: int,
        error: str | None = None,
        description: str | None = None,
        scope: Iterable[str] = (),
    ) -> None:
        if description is not None:
            check_description(description)
        self.status = status
        self.error = error
        self.description = description
        self.scope = " ".join(scope)
        super().__init__(description or "no bearer credentials")

    @classmethod
    def missing(cls) -> BearerError:
        # RFC 6750 §3.1: a request lacking any authentication information gets no error code.
        return cls(401)

    @classmethod
    def invalid_request(cls, description: str) -> BearerError:
        return cls(400, INVALID_REQUEST, description)

    @classmethod
    def invalid_token(cls, description: str) -> BearerError:
        return cls(401, INVALID_TOKEN, description)

    @classmethod
    def insufficient_scope(cls, description: str, scope: Iterable[str]) -> BearerError:
        return cls(403, INSUFFICIENT_SCOPE, description, scope)


def check_description(text: str) -> str:
    """Return ``text`` if it is a valid RFC 6749 error_description, else raise ValueError."""
    if not _DESCRIPTION.fullmatch(text):
        raise ValueError(f"error_description has characters RFC 6749 §5.2 forbids: {text!r}")
    return text


def check_scope_token(scope: str) -> str:
    """Return ``scope`` if it is a valid RFC 6749 §3.3 scope-token, else raise ValueError."""
    if not _SCOPE_TOKEN.fullmatch(scope):
        raise ValueError(f"not a valid scope token: {scope!r}")
    return scope


def check_realm(realm: str) -> str:
    """A realm travels as a quoted-string; allow the same safe characters as a description."""
    if not realm or not _DESCRIPTION.fullmatch(realm):
        raise ValueError(f"realm must be non-empty printable ASCII without '\"' or '\\': {realm!r}")
    return realm


def parse_authorization(value: str | None) -> str:
    """Return the bearer token of an Authorization header value, or raise BearerError."""
    if not value:
        raise BearerError.missing()
    # RFC 7235 §2.1: credentials = auth-scheme [ 1*SP token68 ]; the scheme is case-insensitive.
    scheme, _, credentials = value.partition(" ")
    if scheme.lower() != "bearer":
        # Another scheme (Basic, Digest...) is no bearer authentication at all: a bare challenge.
        raise BearerError.missing()
    token = credentials.strip(" ")
    if not token:
        raise BearerError.invalid_token("The Authorization header has no access token")
    # Checked before the pattern so a huge header costs nothing more than its length.
    if len(token) > MAX_TOKEN_LENGTH:
        raise BearerError.invalid_token("The access token is too long")
    if not _B64TOKEN.fullmatch(token):
        raise BearerError.invalid_token("The access token is malformed")
    return token


def token_from_request(request: Request) -> str:
    """The bearer token of ``request`` (header only), or raise BearerError."""
    token = parse_authorization(request.headers.get("Authorization"))
    # RFC 6750 §2: clients MUST NOT use more than one method to transmit the token; §3.1 makes
    # that invalid_request. The raw query string is searched first so most requests parse
    # nothing, and a body is only looked at when it is a §2.2 form-encoded one.
    if b"access_token" in request.query_string and "access_token" in request.args:
        raise BearerError.invalid_request("The access token was sent in more than one way")
    if request.mimetype == "application/x-www-form-urlencoded" and "access_token" in request.form:
        raise BearerError.invalid_request("The access token was sent in more than one way")
    return token


def www_authenticate(realm: str, error: BearerError | None = None) -> str:
    """The RFC 6750 §3 WWW-Authenticate value: realm, then error, description and scope."""
    value = f'Bearer realm="{realm}"'
    if error is None or error.error is None:
        return value
    value += f', error="{error.error}"'
    if error.description:
        value += f', error_description="{error.description}"'
    if error.scope:
        value += f', scope="{error.scope}"'
    return value


def challenge_response(error: BearerError, realm: str) -> Response:
    """JSON body (no error keys for a bare challenge), WWW-Authenticate, Cache-Control: no-store."""
    body: dict[str, str] = {}
    if error.error is not None:
        body["error"] = error.error
        if error.description:
            body["error_description"] = error.description
    headers = {"WWW-Authenticate": www_authenticate(realm, error), **NO_STORE}
    return Response(json.dumps(body), error.status, headers, mimetype="application/json")
