"""Signing keys when something is wrong: a wrong encryption key, an algorithm change, a
database blip while keys are cached."""

from __future__ import annotations

import requests
from cryptography.fernet import Fernet
from sqlalchemy.exc import OperationalError

from auth_server import create_app
from tests.auth_server.test_keys import kids_by_state, published
from tests.support import AuthServer, auth_settings, start_auth_server


def serve_existing(serve, database_url: str, **overrides) -> AuthServer:
    """Another authorization server on an already seeded database (a redeploy)."""
    server = serve()
    settings = auth_settings(database_url, server.url, **overrides)
    server.mount(create_app(settings))
    return AuthServer(url=server.url, app=server.app, settings=settings, server=server)


def test_wrong_key_encryption_key_makes_readyz_fail_and_tokens_503(serve, make_database_url):
    """An operator sees it on /readyz; clients get 503 temporarily_unavailable, never 500."""
    url = make_database_url("auth")
    first = start_auth_server(serve, url, auth_key_encryption_key=Fernet.generate_key().decode())
    first.login()
    wrong = serve_existing(serve, url, auth_key_encryption_key=Fernet.generate_key().decode())
    ready = requests.get(f"{wrong.url}/readyz", timeout=5)
    assert ready.status_code == 503
    assert ready.json()["signing_keys"] == "unusable"
    response = wrong.token(grant_type="client_credentials")
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
    assert "Retry-After" in response.headers


def test_changing_signing_alg_retires_the_old_algorithms_keys(serve, make_database_url):
    url = make_database_url("auth")
    es = start_auth_server(serve, url)
    old_token = es.login()["access_token"]
    old_active = kids_by_state(es.app)["active"][0]
    ed = serve_existing(serve, url, signing_alg="EdDSA")
    new_token = ed.login()["access_token"]
    keys = published(ed)
    assert keys[old_active]["alg"] == "ES256"  # retired, still published for its tokens
    states = kids_by_state(ed.app)
    assert old_active in states["retired"]
    assert len(states["active"]) == 1 and len(states["next"]) == 1
    assert {keys[k]["alg"] for k in states["active"] + states["next"]} == {"EdDSA"}
    assert ed.is_active(old_token) and ed.is_active(new_token)


def test_cached_signing_key_survives_a_database_blip(auth, monkeypatch):
    """The key ring keeps signing with the key it holds when a re-read fails, and the JWKS
    endpoint (read from the database) serves the cached document meanwhile."""
    keyring = auth.app.extensions["tessera"].keyring
    kid = keyring.signing_key()[0]
    before = published(auth)

    def broken_session():
        raise OperationalError("SELECT 1", {}, Exception("database went away"))

    monkeypatch.setattr(keyring, "_session_factory", broken_session)
    monkeypatch.setattr(keyring, "_cache_seconds", 0)
    assert keyring.signing_key()[0] == kid
    assert published(auth) == before
