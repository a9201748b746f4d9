"""The errors the authorization server's protocol code raises; no Flask here.

How they become HTTP answers is auth_server/web_errors.py. OAuth endpoints answer RFC 6749
§5.2 errors: a JSON object with `error` (and `error_description`), `Cache-Control: no-store`,
and for `invalid_client` after an HTTP Basic attempt, 401 with `WWW-Authenticate: Basic`
(Authlib's InvalidClientError does that part).
"""

from __future__ import annotations

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

__all__ = [
    "AccessDeniedError",
    "AuthorizationPageError",
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
]

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
