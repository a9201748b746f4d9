"""RFC 8414 metadata, the JWKS, and the health endpoints."""

from __future__ import annotations

import requests


def test_metadata_issuer_is_exactly_the_configured_issuer(auth):
    response = requests.get(f"{auth.url}/.well-known/oauth-authorization-server", timeout=5)
    assert response.status_code == 200
    data = response.json()
    assert data["issuer"] == auth.settings.auth_issuer
    for endpoint in ("token", "introspection", "revocation"):
        assert data[f"{endpoint}_endpoint"].startswith(auth.url + "/oauth/")
    assert data["jwks_uri"] == f"{auth.url}/.well-known/jwks.json"
    assert set(data["grant_types_supported"]) == {
        "authorization_code",
        "password",
        "client_credentials",
        "refresh_token",
    }
    assert data["authorization_endpoint"] == f"{auth.url}/oauth/authorize"
    assert data["response_types_supported"] == ["code"]  # REQUIRED by RFC 8414 §2
    assert data["code_challenge_methods_supported"] == ["S256"]  # never plain
    assert "none" in data["token_endpoint_auth_methods_supported"]
    assert "none" not in data["introspection_endpoint_auth_methods_supported"]
    assert data["authorization_response_iss_parameter_supported"] is True  # RFC 9207


def test_jwks_publishes_public_keys_only(auth):
    keys = requests.get(f"{auth.url}/.well-known/jwks.json", timeout=5).json()["keys"]
    assert len(keys) == 2  # active and next (pre-published)
    for key in keys:
        assert {"kid", "alg", "use", "kty"} <= set(key)
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)


def test_healthz_and_readyz(auth):
    assert requests.get(f"{auth.url}/healthz", timeout=5).json() == {"status": "ok"}
    ready = requests.get(f"{auth.url}/readyz", timeout=5)
    assert ready.status_code == 200
    assert ready.json()["database"] == "ok"


def test_unknown_path_is_json_404(auth):
    response = requests.get(f"{auth.url}/nope", timeout=5)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_requests_reaching_the_server_by_an_internal_http_name_are_served(auth):
    """Behind the TLS proxy requests arrive as http://auth-server:8000: not insecure_transport."""
    token = auth.login()["access_token"]
    response = requests.post(
        f"{auth.url}/oauth/introspect",
        data={"token": token},
        auth=("notes-api", "notes-api-secret"),
        headers={"Host": "auth-server:8000"},
        timeout=5,
    )
    assert response.status_code == 200, response.text
    assert response.json()["active"] is True


def test_a_plain_http_issuer_on_a_network_host_needs_the_development_flag():
    import pytest
    from pydantic import ValidationError

    from auth_server.settings import AuthSettings

    with pytest.raises(ValidationError, match="AUTH_ALLOW_HTTP_ISSUER"):
        AuthSettings(auth_issuer="http://auth.example.com")
    assert AuthSettings(auth_issuer="http://auth.example.com", auth_allow_http_issuer=True)
    assert AuthSettings(auth_issuer="https://auth.example.com")
    assert AuthSettings(auth_issuer="http://localhost:8000")
