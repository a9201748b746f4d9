"""RFC 6750 bearer tokens: read one from a request and answer the §3 challenge when it fails.

Only the Authorization request header field (§2.1) is accepted. A token that also arrives as an
``access_token`` form or query parameter is a request that uses more than one method, which
clients MUST NOT do (§2), so it gets ``invalid_request``. Every failure is a ``BearerError``;
``challenge_response`` turns it into the response §3 describes.

RFC 9449 DPoP-bound tokens arrive the same way under the `DPoP` scheme
(``credentials_from_request``); errors about them carry ``scheme = "DPoP"`` and are answered
with a DPoP challenge (§7.1), and a bare challenge can offer both schemes (§7.2).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from flask import Request, Response

from shared.protocol.oauth_syntax import MAX_TOKEN_LENGTH, NO_STORE, SCOPE_TOKEN

INVALID_REQUEST = "invalid_request"
INVALID_TOKEN = "invalid_token"
INSUFFICIENT_SCOPE = "insufficient_scope"
INVALID_DPOP_PROOF = "invalid_dpop_proof"

BEARER = "Bearer"
DPOP = "DPoP"

# Both RFC 6749 §5.2 and RFC 6750 §3 restrict the description to these characters, so it can
# sit inside a quoted-string without escaping: no double quote, no backslash, no controls.
_DESCRIPTION = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")
# RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


class BearerError(Exception):
    """Why a request did not get through; ``error`` is None for a request with no credentials."""

    def __init__(
        self,
        status: int,
        error: str | None = None,
        description: str | None = None,
        scope: Iterable[str] = (),
        scheme: str = BEARER,
    ) -> None:
        if description is not None:
            check_description(description)
        self.status = status
        self.error = error
        self.description = description
        self.scope = " ".join(scope)
        # Which challenge answers it: Bearer (RFC 6750 §3) or DPoP (RFC 9449 §7.1).
        self.scheme = scheme
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

    @classmethod
    def invalid_dpop_proof(cls, description: str) -> BearerError:
        return cls(401, INVALID_DPOP_PROOF, description, scheme=DPOP)


def check_description(text: str) -> str:
    """Return ``text`` if it is a valid RFC 6749 error_description, else raise ValueError."""
    if not _DESCRIPTION.fullmatch(text):
        raise ValueError(f"error_description has characters RFC 6749 §5.2 forbids: {text!r}")
    return text


def check_scope_token(scope: str) -> str:
    """Return ``scope`` if it is a valid RFC 6749 §3.3 scope-token, else raise ValueError."""
    if not SCOPE_TOKEN.fullmatch(scope):
        raise ValueError(f"not a valid scope token: {scope!r}")
    return scope


def check_realm(realm: str) -> str:
    """A realm travels as a quoted-string; allow the same safe characters as a description."""
    if not realm or not _DESCRIPTION.fullmatch(realm):
        raise ValueError(f"realm must be non-empty printable ASCII without '\"' or '\\': {realm!r}")
    return realm


def parse_authorization(value: str | None) -> str:
    """Return the bearer token of an Authorization header value, or raise BearerError."""
    return parse_credentials(value, (BEARER,))[1]


def parse_credentials(
    value: str | None, schemes: Iterable[str] = (BEARER, DPOP)
) -> tuple[str, str]:
    """(scheme, token) of an Authorization header value using one of ``schemes`` (RFC 6750
    `Bearer`, RFC 9449 `DPoP`: the same token68 syntax), or raise BearerError."""
    if not value:
        raise BearerError.missing()
    # RFC 7235 §2.1: credentials = auth-scheme [ 1*SP token68 ]; the scheme is case-insensitive.
    scheme, _, credentials = value.partition(" ")
    known = {name.lower(): name for name in schemes}
    if scheme.lower() not in known:
        # Another scheme (Basic, Digest...) is no token authentication at all: a bare challenge.
        raise BearerError.missing()
    scheme = known[scheme.lower()]
    try:
        return scheme, _token68(credentials)
    except BearerError as error:
        error.scheme = scheme
        raise


def _token68(credentials: str) -> str:
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
    return credentials_from_request(request, (BEARER,))[1]


def credentials_from_request(
    request: Request, schemes: Iterable[str] = (BEARER, DPOP)
) -> tuple[str, str]:
    """(scheme, token) of ``request`` (header only), or raise BearerError."""
    scheme, token = parse_credentials(request.headers.get("Authorization"), schemes)
    # RFC 6750 §2: clients MUST NOT use more than one method to transmit the token; §3.1 makes
    # that invalid_request. The raw query string is searched first so most requests parse
    # nothing, and a body is only looked at when it is a §2.2 form-encoded one.
    if b"access_token" in request.query_string and "access_token" in request.args:
        raise BearerError.invalid_request("The access token was sent in more than one way")
    if request.mimetype == "application/x-www-form-urlencoded" and "access_token" in request.form:
        raise BearerError.invalid_request("The access token was sent in more than one way")
    return scheme, token


def www_authenticate(
    realm: str, error: BearerError | None = None, dpop_algs: Iterable[str] = ()
) -> str:
    """The RFC 6750 §3 WWW-Authenticate value: realm, then error, description and scope.

    With ``dpop_algs`` (a resource server that accepts DPoP), a bare challenge offers the DPoP
    scheme too, and an error about a DPoP request is a DPoP challenge (RFC 9449 §7.1)."""
    algs = " ".join(dpop_algs)
    dpop = f'DPoP realm="{realm}", algs="{algs}"'
    if error is None or error.error is None:
        bearer = f'Bearer realm="{realm}"'
        return f"{bearer}, {dpop}" if algs else bearer
    value = dpop if algs and error.scheme == DPOP else f'Bearer realm="{realm}"'
    value += f', error="{error.error}"'
    if error.description:
        value += f', error_description="{error.description}"'
    if error.scope:
        value += f', scope="{error.scope}"'
    return value


def challenge_response(error: BearerError, realm: str, dpop_algs: Iterable[str] = ()) -> Response:
    """JSON body (no error keys for a bare challenge), WWW-Authenticate, Cache-Control: no-store."""
    body: dict[str, str] = {}
    if error.error is not None:
        body["error"] = error.error
        if error.description:
            body["error_description"] = error.description
    headers = {"WWW-Authenticate": www_authenticate(realm, error, dpop_algs), **NO_STORE}
    return Response(json.dumps(body), error.status, headers, mimetype="application/json")
