"""The server-side session store: opaque ids, stored hashed, expiring when unused."""

from __future__ import annotations

import sqlite3

from examples.demo_web.sessions import SessionStore, SessionTokens
from shared.client import Tokens
from tests.support import FakeClock


def _store(tmp_path, clock) -> SessionStore:
    return SessionStore(str(tmp_path / "sessions.sqlite3"), ttl=600, clock=clock)


def test_the_database_holds_no_session_id(tmp_path):
    store = _store(tmp_path, FakeClock())
    session_id = store.create({"csrf": "c"})
    with sqlite3.connect(tmp_path / "sessions.sqlite3") as conn:
        dump = "\n".join(conn.iterdump())
    assert session_id not in dump
    assert store.load(session_id) == {"csrf": "c"}


def test_a_session_unused_for_its_ttl_is_gone_and_use_extends_it(tmp_path):
    clock = FakeClock()
    store = _store(tmp_path, clock)
    kept, dropped = store.create({}), store.create({})
    clock.advance(500)
    assert store.load(kept) == {}
    clock.advance(500)
    assert store.load(kept) == {}
    assert store.load(dropped) is None
    store.create({})  # purges the expired ones
    assert store.count() == 2


def test_unknown_and_malformed_ids_open_nothing(tmp_path):
    store = _store(tmp_path, FakeClock())
    store.create({"csrf": "c"})
    for presented in (None, "", "nope", "x" * 10_000, "'; DROP TABLE web_session; --"):
        assert store.load(presented) is None
    assert store.count() == 1


def test_session_tokens_are_the_oauth_clients_token_store(tmp_path):
    store = _store(tmp_path, FakeClock())
    session_id = store.create({"csrf": "c"})
    tokens = SessionTokens(store, session_id)
    assert tokens.load() is None
    tokens.save(Tokens("access", "refresh", 123.0, "profile"))
    assert tokens.load() == Tokens("access", "refresh", 123.0, "profile")
    tokens.clear()
    assert tokens.load() is None
    assert store.load(session_id) == {"csrf": "c"}
