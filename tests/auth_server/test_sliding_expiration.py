"""Sliding expiration: introspection answering active is activity of the token's login."""

from __future__ import annotations

import pytest
from sqlalchemy import event, select

from auth_server.db import db
from auth_server.maintenance import purge_expired
from auth_server.models import RefreshFamily, RefreshToken
from tests.support import DEMO_APP, SERVICE_APP, FakeClock, start_auth_server

IDLE, MAX, INTERVAL = 100, 250, 30


@pytest.fixture
def clock():
    return FakeClock(float(10**9))


@pytest.fixture
def auth(serve, make_database_url, clock):
    return start_auth_server(
        serve,
        make_database_url("auth"),
        clock=clock,
        refresh_token_idle_ttl=IDLE,
        refresh_token_max_ttl=MAX,
        refresh_activity_interval=INTERVAL,
    )


def last_active_at(auth) -> int:
    with auth.app.app_context():
        return db.session.scalar(select(RefreshFamily.last_active_at))


def test_use_of_the_access_token_keeps_the_login_from_idling_out(auth, clock):
    login = auth.login()
    clock.advance(90)
    assert auth.introspect(login["access_token"]).json()["active"] is True
    clock.advance(90)  # 180 s since the login's only refresh, 90 s since its last use
    response = auth.refresh(login["refresh_token"])
    assert response.status_code == 200, response.text


def test_without_use_the_login_idles_out_as_before(auth, clock):
    login = auth.login()
    clock.advance(IDLE)
    response = auth.refresh(login["refresh_token"])
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_activity_ends_where_the_last_use_plus_the_idle_timeout_ends(auth, clock):
    login = auth.login()
    clock.advance(50)
    auth.introspect(login["access_token"])
    clock.advance(IDLE)  # exactly IDLE after the last use
    assert auth.refresh(login["refresh_token"]).status_code == 400


def test_the_absolute_lifetime_still_ends_a_login_in_constant_use(auth, clock):
    login = auth.login()
    token, access = login["refresh_token"], login["access_token"]
    for _ in range(MAX // 50 - 1):
        clock.advance(50)
        response = auth.refresh(token)
        assert response.status_code == 200, response.text
        token, access = response.json()["refresh_token"], response.json()["access_token"]
        auth.introspect(access)
    clock.advance(50)
    response = auth.refresh(token)  # MAX seconds after the login, 50 s after its last use
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_an_access_token_keeps_its_fixed_expiry(auth, clock):
    login = auth.login()
    for _ in range(auth.settings.access_token_ttl // INTERVAL):
        clock.advance(INTERVAL)
        auth.introspect(login["access_token"])
    clock.advance(auth.settings.access_token_ttl % INTERVAL)
    assert auth.introspect(login["access_token"]).json() == {"active": False}


def test_activity_is_written_at_most_once_per_interval(auth, clock):
    login = auth.login()
    started = last_active_at(auth)
    with auth.app.app_context():
        engine = db.engine
    updates = []

    def count_updates(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("UPDATE REFRESH_FAMILIES"):
            updates.append(parameters)

    event.listen(engine, "before_cursor_execute", count_updates)
    try:
        for _ in range(INTERVAL - 1):
            clock.advance(1)
            assert auth.introspect(login["access_token"]).json()["active"] is True
        assert updates == [] and last_active_at(auth) == started
        clock.advance(1)
        auth.introspect(login["access_token"])
        auth.introspect(login["access_token"])
        assert len(updates) == 1
        assert last_active_at(auth) == started + INTERVAL
    finally:
        event.remove(engine, "before_cursor_execute", count_updates)


def test_a_revoked_login_records_no_activity_and_stays_revoked(auth, clock):
    login = auth.login()
    assert auth.revoke(login["refresh_token"]).status_code == 200
    started = last_active_at(auth)
    clock.advance(INTERVAL)
    assert auth.introspect(login["access_token"]).json() == {"active": False}
    assert last_active_at(auth) == started
    assert auth.refresh(login["refresh_token"]).json()["error"] == "invalid_grant"


def test_tokens_of_no_login_are_introspected_as_before(auth, clock):
    token = auth.token(SERVICE_APP, grant_type="client_credentials").json()["access_token"]
    clock.advance(INTERVAL)
    assert auth.introspect(token).json()["active"] is True


def test_purge_keeps_the_refresh_token_of_a_login_kept_alive_by_use(auth, clock):
    login = auth.login()
    clock.advance(90)
    auth.introspect(login["access_token"])
    clock.advance(20)  # the refresh token's own expiry has passed; the login's has not
    with auth.app.app_context():
        purge_expired(db.session, int(clock()), 86400, refresh_token_idle_ttl=IDLE)
        assert db.session.scalar(select(RefreshToken.id)) is not None
    assert auth.refresh(login["refresh_token"], client=DEMO_APP).status_code == 200


def test_purge_still_deletes_the_refresh_token_of_an_idle_login(auth, clock):
    auth.login()
    clock.advance(IDLE)
    with auth.app.app_context():
        counts = purge_expired(db.session, int(clock()), 86400, refresh_token_idle_ttl=IDLE)
    assert counts["refresh_tokens"] == 1


def test_logout_ends_a_login_kept_alive_by_use(auth, clock):
    login = auth.login()
    clock.advance(90)
    auth.introspect(login["access_token"])
    clock.advance(20)  # alive only through its use
    assert auth.revoke(login["refresh_token"]).status_code == 200
    assert auth.refresh(login["refresh_token"]).json()["error"] == "invalid_grant"
    assert auth.introspect(login["access_token"]).json() == {"active": False}
