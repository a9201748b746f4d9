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
