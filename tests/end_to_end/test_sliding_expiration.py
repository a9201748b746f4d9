"""Sliding expiration, the issue's acceptance: a login in use at the API does not idle out.

Both services are real HTTP servers; the authorization server's clock is moved by hand (the
notes API checks `exp` on the wall clock, which the short test stays far from).
"""

from __future__ import annotations

import time

import pytest

from tests.support import FakeClock, start_auth_server, start_resource_server


@pytest.fixture
def clock():
    # A whole second: "t = 10.5 s" is then exactly half-way through a second.
    return FakeClock(float(int(time.time())))


@pytest.fixture
def auth(serve, make_database_url, clock):
    return start_auth_server(
        serve,
        make_database_url("auth"),
        clock=clock,
        access_token_ttl=12,
        refresh_token_idle_ttl=6,
        refresh_activity_interval=1,
    )


@pytest.fixture
def notes_api(serve, make_database_url, auth):
    return start_resource_server(serve, make_database_url("notes"), auth)


def test_a_login_used_at_the_api_outlives_the_idle_timeout_and_an_unused_one_does_not(
    auth, notes_api, clock
):
    start = clock()
    working = auth.login()
    idle = auth.login()
    for second in range(1, 10):  # t = 1 .. 9 s
        clock.now = start + second
        response = notes_api.get("/api/me", working["access_token"])
        assert response.status_code == 200, response.text

    clock.now = start + 8
    refused = auth.refresh(idle["refresh_token"])
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"

    clock.now = start + 10.5
    refreshed = auth.refresh(working["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert notes_api.get("/api/me", refreshed.json()["access_token"]).status_code == 200
