"""Tessera's client library, for third-party Python apps: ``OAuthClient`` (RFC 8414 discovery,
token requests, refresh on ``invalid_token``, RFC 7009 logout, RFC 9449 DPoP), its token stores,
``JWKSValidator`` (local validation of RFC 9068 access tokens) and ``DPoPKey``.

It imports neither Flask nor SQLAlchemy; what it does import is the ``client`` extra
(requests, joserfc, cryptography), and the ``keyring`` extra adds ``KeyringTokenStore``'s OS
keyring.
"""

from shared.client.dpop import DPoPKey
from shared.client.jwt_validation import InvalidToken, JWKSUnavailable, JWKSValidator
from shared.client.oauth import (
    DiscoveryError,
    KeyringTokenStore,
    LoginRequired,
    MemoryTokenStore,
    OAuthClient,
    OAuthClientError,
    ProtocolError,
    TokenEndpointError,
    Tokens,
    TokenStore,
    is_invalid_token,
    parse_www_authenticate,
)

__all__ = [
    "DPoPKey",
    "DiscoveryError",
    "InvalidToken",
    "JWKSUnavailable",
    "JWKSValidator",
    "KeyringTokenStore",
    "LoginRequired",
    "MemoryTokenStore",
    "OAuthClient",
    "OAuthClientError",
    "ProtocolError",
    "TokenEndpointError",
    "TokenStore",
    "Tokens",
    "is_invalid_token",
    "parse_www_authenticate",
]
