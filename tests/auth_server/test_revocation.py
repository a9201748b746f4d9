"""RFC 7009 revocation: access tokens, refresh tokens (logout: the whole login), errors."""

from __future__ import annotations

import requests

from tests.support import DEMO_APP, OTHER_APP


def test_revoking_an_access_token_deactivates_only_it(auth):
    tokens = auth.login()
    assert auth.revoke(tokens["access_token"], token_type_hint="access_token").status_code == 200
    assert not auth.is_active(tokens["access_token"])
    assert auth.is_active(tokens["refresh_token"])


def test_logout_revoking_the_refresh_token_revokes_its_access_tokens(auth):
    """RFC 7009 §2.1: revoking a refresh token invalidates the access tokens of its grant."""
    tokens = auth.login()
    rotated = auth.refresh(tokens["refresh_token"]).json()
    response = auth.revoke(rotated["refresh_token"], token_type_hint="refresh_token")
    assert response.status_code == 200
    assert not auth.is_active(tokens["access_token"])
    assert not auth.is_active(rotated["access_token"])
    assert not auth.is_active(rotated["refresh_token"])
    refused = auth.refresh(rotated["refresh_token"])
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"


def test_unknown_token_revocation_is_200(auth):
    """RFC 7009 §2.2: invalid tokens do not cause an error response."""
    response = auth.revoke("never-issued")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"


def test_revoking_twice_is_200(auth):
    token = auth.login()["access_token"]
    assert auth.revoke(token).status_code == 200
    assert auth.revoke(token).status_code == 200


def test_another_clients_token_is_refused_and_stays_active(auth):
    """RFC 7009 §2.1: the token must have been issued to the revoking client."""
    token = auth.login()["access_token"]
    response = auth.revoke(token, client=OTHER_APP)
    assert response.status_code == 400
    assert response.json()["error"] == "unauthorized_client"
    assert auth.is_active(token)


def test_revocation_requires_client_authentication(auth):
    token = auth.login()["access_token"]
    response = requests.post(f"{auth.url}/oauth/revoke", data={"token": token}, timeout=5)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert auth.is_active(token)


def test_missing_token_is_invalid_request(auth):
    response = requests.post(f"{auth.url}/oauth/revoke", data={}, auth=DEMO_APP, timeout=5)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
