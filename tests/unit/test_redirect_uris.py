"""Redirect URIs a client may register (RFC 6749 §3.1.2, RFC 9700 §2.1 and §4.1.3, RFC 8252
§7.3): absolute https with a host, http only on loopback, no fragment, user info or
wildcard."""

from __future__ import annotations

import pytest

from auth_server.clients import ClientRegistrationError, validate_redirect_uri


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example.com/callback",
        "https://app.example.com:8443/cb?from=app",
        "http://127.0.0.1:8002/callback",
        "http://localhost/cb",
        "http://[::1]:9000/cb",
    ],
)
def test_accepted(uri):
    validate_redirect_uri(uri)


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "http://app.example.com/cb",  # plain http off loopback
        "https://app.example.com/cb#done",
        "https://user:pass@app.example.com/cb",
        "https://*.example.com/cb",
        "https://app.example.com/c b",
        "https://app.example.com/cb\n",
        "https://app.example.com/" + "a" * 2000,
        "https://app.example.com:99999/cb",
        "/relative/callback",
        "com.example.app:/oauth2redirect",  # no host: private-use schemes are not supported
    ],
)
def test_refused(uri):
    with pytest.raises(ClientRegistrationError):
        validate_redirect_uri(uri)
