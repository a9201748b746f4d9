"""Reading the signing keys never writes. The JWKS endpoint and /readyz are unauthenticated and
the token endpoint reads the key inside its transaction; a key ring that created or rotated keys
when read would be a second writer there (on SQLite it waits behind the first). Keys are created
at start-up and rotated by `keys prepare` / `keys rotate` (auth_server/keys.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import delete, event, select

from auth_server.db import db
from auth_server.models import SigningKey
from tests.support import FakeClock, start_auth_server

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")

WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE)\b", re.IGNORECASE)


@contextmanager
def writes_to_signing_keys(app) -> Iterator[list[str]]:
    """Every INSERT/UPDATE/DELETE of the signing_keys table on the app's engine meanwhile."""
    with app.app_context():
        engine = db.engine
    seen: list[str] = []

    def record(_conn, _cursor, statement, _parameters, _context, _executemany):
        if WRITE.match(statement) and SigningKey.__tablename__ in statement:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def states(app) -> dict[str, str]:
    with app.app_context():
        return {k.kid: k.state for k in db.session.scalars(select(SigningKey))}


def test_start_up_creates_the_active_and_next_key_before_any_request(serve, make_database_url):
    auth = start_auth_server(serve, make_database_url("auth"))
    assert sorted(states(auth.app).values()) == ["active", "next"]


def test_jwks_readyz_and_tokens_write_no_key_when_none_exists(serve, make_database_url):
    """With no key (deleted behind the service's back) the reads report it and create none."""
    auth = start_auth_server(serve, make_database_url("auth"))
    with auth.app.app_context():
        db.session.execute(delete(SigningKey))
        db.session.commit()
    auth.app.extensions["tessera"].keyring.invalidate()
    with writes_to_signing_keys(auth.app) as writes:
        assert auth.http.get(f"{auth.url}/.well-known/jwks.json", timeout=5).status_code == 503
        ready = auth.http.get(f"{auth.url}/readyz", timeout=5)
        assert ready.status_code == 503 and ready.json()["signing_keys"] == "unusable"
        assert auth.token(grant_type="client_credentials").status_code == 503
    assert writes == []
    assert states(auth.app) == {}
    result = auth.app.test_cli_runner().invoke(args=["keys", "prepare"])
    assert result.exit_code == 0, result.output
    auth.app.extensions["tessera"].keyring.invalidate()
    assert auth.token(grant_type="client_credentials").status_code == 200


def test_a_due_rotation_is_not_made_by_reads_but_by_keys_prepare(serve, make_database_url):
    clock = FakeClock()
    auth = start_auth_server(
        serve, make_database_url("auth"), clock, signing_key_rotation_days=1, key_cache_seconds=1
    )
    before = states(auth.app)
    clock.advance(86400 + 60)
    with writes_to_signing_keys(auth.app) as writes:
        assert auth.http.get(f"{auth.url}/.well-known/jwks.json", timeout=5).status_code == 200
        assert auth.http.get(f"{auth.url}/readyz", timeout=5).status_code == 200
        assert auth.token(grant_type="client_credentials").status_code == 200
    assert writes == []
    assert states(auth.app) == before
    result = auth.app.test_cli_runner().invoke(args=["keys", "prepare"])
    assert result.exit_code == 0, result.output
    assert "rotated" in result.output
    after = states(auth.app)
    assert sorted(after.values()) == ["active", "next", "retired"]
    assert {kid for kid, state in after.items() if state == "retired"} == {
        kid for kid, state in before.items() if state == "active"
    }
