"""Logout, password change, operator revocation and disabling a user cut off every live token
at the resource server on its very next request."""

from __future__ import annotations

import requests

from tests.support import ALICE, BOB, DEMO_APP


def _all_refused(notes_api, tokens: list[str]) -> bool:
    return all(notes_api.get("/api/me", token).status_code == 401 for token in tokens)


def test_logout_cuts_off_the_login_at_the_api(auth, notes_api):
    login = auth.login()
    rotated = auth.refresh(login["refresh_token"]).json()
    assert notes_api.get("/api/me", rotated["access_token"]).status_code == 200
    auth.revoke(rotated["refresh_token"], token_type_hint="refresh_token")
    assert _all_refused(notes_api, [login["access_token"], rotated["access_token"]])


def test_password_change_cuts_off_every_login_of_the_user_at_the_api(auth, notes_api):
    logins = [auth.login() for _ in range(3)]
    other = auth.login(BOB)
    response = requests.post(
        f"{auth.url}/account/password",
        auth=DEMO_APP,
        timeout=5,
        data={
            "username": "alice",
            "current_password": ALICE[1],
            "new_password": "through-the-looking-glass",
        },
    )
    assert response.status_code == 200
    assert _all_refused(notes_api, [login["access_token"] for login in logins])
    assert all(auth.refresh(login["refresh_token"]).status_code == 400 for login in logins)
    assert notes_api.get("/api/me", other["access_token"]).status_code == 200


def test_operator_revoke_and_disable_cut_off_the_user_at_the_api(auth, notes_api):
    runner = auth.app.test_cli_runner()
    first = auth.login()
    assert runner.invoke(args=["users", "revoke-tokens", "alice"]).exit_code == 0
    assert _all_refused(notes_api, [first["access_token"]])
    second = auth.login()
    assert notes_api.get("/api/me", second["access_token"]).status_code == 200
    assert runner.invoke(args=["users", "disable", "alice"]).exit_code == 0
    assert _all_refused(notes_api, [second["access_token"]])
    assert (
        auth.token(grant_type="password", username="alice", password=ALICE[1]).json()["error"]
        == "invalid_grant"
    )


def test_reused_refresh_token_cuts_off_the_thief_and_the_user_at_the_api(auth, notes_api):
    """RFC 9700 §4.14.2: after a replay nobody holding tokens of that login gets in."""
    login = auth.login()
    attacker = auth.refresh(login["refresh_token"]).json()  # the thief rotates first
    replay = auth.refresh(login["refresh_token"])  # the real user comes back with the old one
    assert replay.json()["error"] == "invalid_grant"
    assert _all_refused(notes_api, [login["access_token"], attacker["access_token"]])
    assert auth.refresh(attacker["refresh_token"]).status_code == 400
