"""Refresh tokens (RFC 6749 §6, RFC 9700 §4.14.2): rotation, reuse detection, client binding,
sliding idle expiry within an absolute lifetime, and what races cannot break."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from auth_server.db import db
from auth_server.models import AuditEvent
from auth_server.store import find_client, find_user
from tests.support import DEMO_APP, OTHER_APP, FakeClock, start_auth_server

THREADS = 50


def _race(n: int, fn):
    """Run fn(i) in n threads released at the same instant; return the results in order."""
    barrier = threading.Barrier(n)

    def run(i):
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def test_refresh_rotates_both_tokens_and_consumes_the_old_one(auth):
    login = auth.login()
    response = auth.refresh(login["refresh_token"])
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    rotated = response.json()
    assert rotated["refresh_token"] != login["refresh_token"]
    assert rotated["access_token"] != login["access_token"]
    assert rotated["scope"] == login["scope"]
    assert auth.is_active(rotated["refresh_token"])
    assert not auth.is_active(login["refresh_token"])  # consumed
    assert auth.is_active(login["access_token"])  # still valid until it expires


def test_replayed_refresh_token_revokes_family(auth):
    """A consumed token presented again revokes every token of that login and is audited."""
    login = auth.login()
    first = auth.refresh(login["refresh_token"]).json()
    second = auth.refresh(first["refresh_token"]).json()
    replay = auth.refresh(login["refresh_token"])
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    for token in (
        login["access_token"],
        first["access_token"],
        second["access_token"],
        second["refresh_token"],
    ):
        assert not auth.is_active(token)
    assert auth.refresh(second["refresh_token"]).json()["error"] == "invalid_grant"
    with auth.app.app_context():
        events = db.session.scalars(
            select(AuditEvent).where(AuditEvent.event == "refresh_token_reuse_detected")
        ).all()
    assert len(events) == 1
    assert events[0].client_id == "demo-app"
    assert login["refresh_token"] not in events[0].detail


def test_other_logins_survive_a_family_revocation(auth):
    one, two = auth.login(), auth.login()
    auth.refresh(one["refresh_token"])
    auth.refresh(one["refresh_token"])  # reuse: family one revoked
    assert not auth.is_active(one["access_token"])
    assert auth.is_active(two["access_token"])
    assert auth.refresh(two["refresh_token"]).status_code == 200


def test_refresh_by_another_client_is_invalid_grant_and_changes_nothing(auth):
    login = auth.login()
    stolen = auth.refresh(login["refresh_token"], client=OTHER_APP)
    assert stolen.status_code == 400
    assert stolen.json()["error"] == "invalid_grant"
    assert auth.is_active(login["access_token"])
    assert auth.refresh(login["refresh_token"]).status_code == 200


def test_refresh_can_narrow_scope_but_the_login_keeps_its_scope(auth):
    """RFC 6749 §6: the new refresh token has the scope of the one presented."""
    login = auth.login()
    narrow = auth.refresh(login["refresh_token"], scope="notes:read").json()
    assert narrow["scope"] == "notes:read"
    assert auth.introspect(narrow["access_token"]).json()["scope"] == "notes:read"
    assert auth.refresh_token_record(narrow["refresh_token"]).scope == login["scope"]
    full = auth.refresh(narrow["refresh_token"]).json()
    assert full["scope"] == login["scope"]


def test_refresh_cannot_widen_scope_and_the_token_stays_usable(auth):
    login = auth.login(scope="profile")
    widened = auth.refresh(login["refresh_token"], scope="profile notes:write")
    assert widened.status_code == 400
    assert widened.json()["error"] == "invalid_scope"
    assert auth.refresh(login["refresh_token"]).status_code == 200


def test_refresh_token_missing_is_invalid_request(auth):
    response = auth.token(grant_type="refresh_token")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def timed_auth(serve, make_database_url, clock):
    """Idle timeout 100 s, absolute lifetime 250 s, time moved by hand."""
    return start_auth_server(
        serve,
        make_database_url("auth"),
        clock=clock,
        refresh_token_idle_ttl=100,
        refresh_token_max_ttl=250,
    )


def test_unused_refresh_token_dies_after_the_idle_timeout(timed_auth, clock):
    login = timed_auth.login()
    clock.advance(101)
    response = timed_auth.refresh(login["refresh_token"])
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_each_use_renews_the_idle_window(timed_auth, clock):
    token = timed_auth.login()["refresh_token"]
    for _ in range(2):
        clock.advance(90)
        response = timed_auth.refresh(token)
        assert response.status_code == 200, response.text
        token = response.json()["refresh_token"]


def test_absolute_lifetime_is_not_extended_by_use(timed_auth, clock):
    """The seed's last note: past the absolute lifetime the user logs in again."""
    token = timed_auth.login()["refresh_token"]
    for _ in range(2):
        clock.advance(90)
        token = timed_auth.refresh(token).json()["refresh_token"]
    clock.advance(71)  # 251 s after login; the last refresh was 71 s ago
    response = timed_auth.refresh(token)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert timed_auth.introspect(token).json() == {"active": False}


def test_concurrent_refreshes_yield_exactly_one_successor(auth):
    """50 simultaneous uses of one token: one successor; every other use is reuse."""
    login = auth.login()
    responses = _race(THREADS, lambda _: auth.refresh(login["refresh_token"]))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 1, statuses
    assert statuses.count(400) == THREADS - 1
    assert {r.json()["error"] for r in responses if r.status_code == 400} == {"invalid_grant"}
    winner = next(r.json() for r in responses if r.status_code == 200)
    # With no grace window the duplicates are reuse: the one successor is revoked too.
    assert not auth.is_active(winner["refresh_token"])
    assert not auth.is_active(winner["access_token"])


def test_duplicates_within_the_grace_window_get_the_same_successor(serve, make_database_url):
    auth = start_auth_server(serve, make_database_url("auth"), refresh_reuse_grace=30)
    login = auth.login()
    responses = _race(THREADS, lambda _: auth.refresh(login["refresh_token"]))
    assert [r.status_code for r in responses] == [200] * THREADS
    bodies = {json.dumps(r.json(), sort_keys=True) for r in responses}
    assert len(bodies) == 1  # one successor, handed to every duplicate
    successor = responses[0].json()
    assert auth.is_active(successor["refresh_token"])
    assert auth.refresh(successor["refresh_token"]).status_code == 200


def test_reuse_after_the_grace_window_still_revokes(serve, make_database_url):
    clock = FakeClock()
    auth = start_auth_server(serve, make_database_url("auth"), clock=clock, refresh_reuse_grace=5)
    login = auth.login()
    successor = auth.refresh(login["refresh_token"]).json()
    clock.advance(6)
    assert auth.refresh(login["refresh_token"]).json()["error"] == "invalid_grant"
    assert not auth.is_active(successor["refresh_token"])


def test_refresh_racing_revocation_never_leaves_a_live_token(auth):
    """Logout and refresh at the same instant: whatever wins, nothing of that login lives."""
    for _ in range(10):
        login = auth.login()

        def act(i, rt=login["refresh_token"]):
            if i == 0:
                return auth.revoke(rt, token_type_hint="refresh_token")
            return auth.refresh(rt)

        revoke, refresh = _race(2, act)
        assert revoke.status_code == 200
        assert refresh.status_code in (200, 400)
        tokens = [login["access_token"], login["refresh_token"]]
        if refresh.status_code == 200:
            tokens += [refresh.json()["access_token"], refresh.json()["refresh_token"]]
        assert not any(auth.is_active(t) for t in tokens)


def test_refresh_racing_user_revocation_never_leaves_a_live_token(auth):
    accounts_app = auth.app
    for _ in range(10):
        login = auth.login()

        def act(i, rt=login["refresh_token"]):
            if i == 0:
                with accounts_app.app_context():
                    components = accounts_app.extensions["tessera"]
                    accounts = components.accounts()
                    user = find_user(accounts.session, "alice")
                    return accounts.revoke_tokens(user, actor="operator", reason="test")
            return auth.refresh(rt)

        _, refresh = _race(2, act)
        tokens = [login["access_token"], login["refresh_token"]]
        if refresh.status_code == 200:
            tokens += [refresh.json()["access_token"], refresh.json()["refresh_token"]]
        assert not any(auth.is_active(t) for t in tokens)


def test_refresh_after_client_lost_the_grant_type_is_unauthorized_client(auth):
    login = auth.login()
    with auth.app.app_context():
        client = find_client(db.session, DEMO_APP[0])
        client.grant_types = "password"
        db.session.commit()
    response = auth.refresh(login["refresh_token"])
    assert response.status_code == 400
    assert response.json()["error"] == "unauthorized_client"
