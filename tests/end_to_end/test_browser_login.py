"""The browser login of the seed (authorization code + PKCE), then the notes API with the
tokens it gave, both services on real ports."""

from __future__ import annotations

import requests

from tests.support import SPA_APP, SPA_REDIRECT, Browser, code_request, pkce_pair, query_of


def test_browser_login_then_call_the_api_refresh_and_log_out(auth, notes_api):
    verifier, challenge = pkce_pair()
    params = code_request(challenge=challenge)
    redirected = Browser(auth).login(**params)
    assert redirected.status_code == 303
    callback = query_of(redirected.headers["Location"])
    # what the app checks on its callback: its state, and the issuer it sent the user to
    assert callback["state"] == params["state"]
    assert callback["iss"] == auth.url

    token_url = f"{auth.url}/oauth/token"
    tokens = requests.post(
        token_url,
        data={
            "grant_type": "authorization_code",
            "client_id": SPA_APP,
            "code": callback["code"],
            "redirect_uri": SPA_REDIRECT,
            "code_verifier": verifier,
        },
        timeout=10,
    ).json()
    me = notes_api.get("/api/me", tokens["access_token"])
    assert me.status_code == 200
    assert me.json()["username"] == "alice" and me.json()["client_id"] == SPA_APP
    created = notes_api.call("POST", "/api/notes", tokens["access_token"], json={"body": "spa"})
    assert created.status_code == 201

    refreshed = requests.post(
        token_url,
        data={
            "grant_type": "refresh_token",
            "client_id": SPA_APP,
            "refresh_token": tokens["refresh_token"],
        },
        timeout=10,
    ).json()
    listed = notes_api.get("/api/notes", refreshed["access_token"])
    assert [n["body"] for n in listed.json()["notes"]] == ["spa"]

    # logout: revoking the refresh token ends the login everywhere
    revoked = requests.post(
        f"{auth.url}/oauth/revoke",
        data={"client_id": SPA_APP, "token": refreshed["refresh_token"]},
        timeout=10,
    )
    assert revoked.status_code == 200
    assert notes_api.get("/api/me", refreshed["access_token"]).status_code == 401
    assert notes_api.get("/api/me", tokens["access_token"]).status_code == 401
