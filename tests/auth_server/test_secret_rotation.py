"""Client-secret rotation with an overlap: `flask --app auth_server clients rotate-secret`."""

from __future__ import annotations

import json
import logging

import pytest
import requests
from sqlalchemy import select

from auth_server.db import db
from auth_server.models import AuditEvent, Client
from shared.protocol.digests import sha256_hex
from tests.support import DEMO_APP, NOTES_API, SPA_APP, FakeClock, start_auth_server

OVERLAP = 3600


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def timed_auth(serve, make_database_url, clock):
    # The production default: each worker caches a client's registration for 5 s. A rotation
    # must not wait for it.
    return start_auth_server(serve, make_database_url("auth"), clock=clock, client_cache_seconds=5)


def rotate(auth, client_id: str, *extra: str) -> tuple[int, str]:
    result = auth.app.test_cli_runner().invoke(args=["clients", "rotate-secret", client_id, *extra])
    return result.exit_code, result.output


def rotated_secret(auth, client_id: str, *extra: str) -> str:
    code, output = rotate(auth, client_id, *extra)
    assert code == 0, output
    return next(
        line.split()[-1] for line in output.splitlines() if line.startswith("client_secret:")
    )


def client_credentials(auth, client_id: str, secret: str, *, post: bool = False):
    form = {"grant_type": "client_credentials"}
    if post:
        form.update(client_id=client_id, client_secret=secret)
        return requests.post(f"{auth.url}/oauth/token", data=form, timeout=10)
    return requests.post(f"{auth.url}/oauth/token", data=form, auth=(client_id, secret), timeout=10)


def assert_invalid_client(response: requests.Response, *, basic: bool) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"
    assert response.headers["Cache-Control"] == "no-store"
    if basic:
        assert response.headers["WWW-Authenticate"].startswith("Basic")


@pytest.mark.parametrize("post", [False, True], ids=["basic", "post"])
def test_old_secret_works_during_the_overlap_and_is_refused_after(timed_auth, clock, post):
    client_id, old = DEMO_APP
    # Cached under the old secret in this worker before the rotation.
    assert client_credentials(timed_auth, client_id, old, post=post).status_code == 200
    new = rotated_secret(timed_auth, client_id, "--overlap", str(OVERLAP))

    assert client_credentials(timed_auth, client_id, new, post=post).status_code == 200
    assert client_credentials(timed_auth, client_id, old, post=post).status_code == 200
    clock.advance(OVERLAP - 1)
    assert client_credentials(timed_auth, client_id, old, post=post).status_code == 200
    clock.advance(1)
    assert_invalid_client(client_credentials(timed_auth, client_id, old, post=post), basic=not post)
    assert client_credentials(timed_auth, client_id, new, post=post).status_code == 200


def test_new_secret_works_at_once_in_a_worker_that_cached_the_old_registration(timed_auth):
    notes_id, old = NOTES_API
    token = timed_auth.login()["access_token"]
    assert timed_auth.introspect(token, client=(notes_id, old)).json()["active"] is True
    new = rotated_secret(timed_auth, notes_id)
    assert timed_auth.introspect(token, client=(notes_id, new)).json()["active"] is True
    assert timed_auth.introspect(token, client=(notes_id, old)).json()["active"] is True


def test_rotating_twice_ends_the_first_secret_at_once(timed_auth):
    client_id, first = DEMO_APP
    second = rotated_secret(timed_auth, client_id)
    third = rotated_secret(timed_auth, client_id)
    assert_invalid_client(client_credentials(timed_auth, client_id, first), basic=True)
    assert client_credentials(timed_auth, client_id, second).status_code == 200
    assert client_credentials(timed_auth, client_id, third).status_code == 200


def test_overlap_zero_refuses_the_old_secret_at_once(timed_auth):
    client_id, old = DEMO_APP
    new = rotated_secret(timed_auth, client_id, "--overlap", "0")
    assert_invalid_client(client_credentials(timed_auth, client_id, old), basic=True)
    assert client_credentials(timed_auth, client_id, new).status_code == 200


def test_default_overlap_is_one_day(timed_auth, clock):
    client_id, old = DEMO_APP
    rotated_secret(timed_auth, client_id)
    clock.advance(86399)
    assert client_credentials(timed_auth, client_id, old).status_code == 200
    clock.advance(1)
    assert_invalid_client(client_credentials(timed_auth, client_id, old), basic=True)


def test_only_digests_are_stored_and_the_rotation_is_audited(timed_auth, clock):
    client_id, old = DEMO_APP
    new = rotated_secret(timed_auth, client_id, "--overlap", "60")
    with timed_auth.app.app_context():
        stored = db.session.scalar(select(Client).where(Client.client_id == client_id))
        assert stored.secret_hash == sha256_hex(new)
        assert stored.previous_secret_hash == sha256_hex(old)
        assert stored.previous_secret_expires_at == int(clock()) + 60
        event = db.session.scalars(
            select(AuditEvent).where(AuditEvent.event == "client_secret_rotated")
        ).one()
    assert event.client_id == client_id and event.actor == "operator"
    assert json.loads(event.detail) == {"previous_secret_expires_at": int(clock()) + 60}
    assert new not in event.detail and old not in event.detail


def test_clients_list_shows_when_the_old_secret_expires_and_never_a_secret(timed_auth, clock):
    client_id, old = DEMO_APP
    new = rotated_secret(timed_auth, client_id, "--overlap", "60")
    listing = timed_auth.app.test_cli_runner().invoke(args=["clients", "list"]).output
    line = next(row for row in listing.splitlines() if row.startswith(client_id + "\t"))
    assert "previous_secret_expires=" in line
    assert new not in listing and old not in listing
    clock.advance(60)
    listing = timed_auth.app.test_cli_runner().invoke(args=["clients", "list"]).output
    assert "previous_secret_expires=" not in listing


def test_the_new_secret_never_reaches_the_logs(timed_auth, caplog):
    caplog.set_level(logging.DEBUG)
    new = rotated_secret(timed_auth, DEMO_APP[0])
    client_credentials(timed_auth, DEMO_APP[0], new)
    client_credentials(timed_auth, DEMO_APP[0], new + "x")
    assert new not in caplog.text
    assert DEMO_APP[1] not in caplog.text


def test_unknown_client_is_an_error_and_changes_nothing(timed_auth):
    code, output = rotate(timed_auth, "no-such-client")
    assert code != 0
    assert "No client 'no-such-client'" in output
    with timed_auth.app.app_context():
        assert not db.session.scalars(
            select(AuditEvent).where(AuditEvent.event == "client_secret_rotated")
        ).all()


def test_a_public_client_has_no_secret_to_rotate(timed_auth):
    code, output = rotate(timed_auth, SPA_APP)
    assert code != 0
    assert "public" in output


def test_a_negative_overlap_is_refused(timed_auth):
    code, output = rotate(timed_auth, DEMO_APP[0], "--overlap", "-5")
    assert code != 0
    assert client_credentials(timed_auth, *DEMO_APP).status_code == 200
