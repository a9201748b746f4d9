"""RFC 7009 revocation: access tokens, refresh tokens (logout: the whole login), errors."""

from __future__ import annotations

import pytest
import requests

from tests.support import DEMO_APP, OTHER_APP, SPA_APP


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


def _revoke_as_public_client(auth, token: str) -> requests.Response:
    """RFC 7009 §2.1: a public client identifies itself with client_id alone."""
    data = {"token": token, "client_id": SPA_APP}
    return requests.post(f"{auth.url}/oauth/revoke", data=data, timeout=5)


@pytest.mark.parametrize("revoker", ["public", "confidential"])
def test_another_clients_token_gets_the_unknown_token_answer_and_stays_live(auth, revoker):
    """RFC 7009 §2.1/§2.2: a token issued to another client is not revoked, and the answer is
    the one an unknown token gets, so it tells nobody whether a token is live."""

    def revoke(token):
        if revoker == "public":
            return _revoke_as_public_client(auth, token)
        return auth.revoke(token, client=OTHER_APP)

    tokens = auth.login()
    unknown = revoke("never-issued")
    for token in (tokens["access_token"], tokens["refresh_token"]):
        response = revoke(token)
        assert (response.status_code, response.content) == (unknown.status_code, unknown.content)
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == "no-store"
    assert auth.is_active(tokens["access_token"])
    # the refresh token (the login) is untouched: it still rotates
    assert auth.refresh(tokens["refresh_token"]).status_code == 200


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
