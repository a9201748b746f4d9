"""Client registrations are reused for CLIENT_CACHE_SECONDS, then read again."""

from __future__ import annotations

from auth_server.clients import ClientDirectory
from auth_server.db import db
from auth_server.store import find_client
from tests.support import NOTES_API, FakeClock


def _set_disabled(auth, client_id: str, disabled: bool) -> None:
    with auth.app.app_context():
        find_client(db.session, client_id).disabled = disabled
        db.session.commit()


def test_a_disabled_client_is_refused_once_its_cache_entry_expires(auth):
    clock = FakeClock(0)
    auth.app.extensions["tessera"].clients = ClientDirectory(5, clock=clock)
    token = auth.login()["access_token"]
    assert auth.introspect(token).status_code == 200
    _set_disabled(auth, NOTES_API[0], True)
    clock.advance(4)
    assert auth.introspect(token).status_code == 200  # still within the cache window
    clock.advance(1)
    refused = auth.introspect(token)
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_client"


def test_a_wrong_secret_is_refused_even_when_the_client_is_cached(auth):
    auth.app.extensions["tessera"].clients = ClientDirectory(60)
    token = auth.login()["access_token"]
    assert auth.introspect(token).status_code == 200
    assert auth.introspect(token, client=(NOTES_API[0], "wrong")).status_code == 401


def test_unknown_client_ids_are_not_remembered(auth):
    directory = ClientDirectory(60)
    auth.app.extensions["tessera"].clients = directory
    for n in range(20):
        assert auth.introspect("x", client=(f"nobody-{n}", "x")).status_code == 401
    assert directory._entries == {}
