"""Introspection answers from each worker's memory, and every committed revocation makes every
worker forget at once (auth_server/introspection_memory.py).

A "worker" here is a second app on the same database, as a gunicorn worker is: its own process
memory, the same host. POLL_NEVER makes sure it learns of the revocation through the host's
generation alone; another host is a second app with its own generation file."""

from __future__ import annotations

import gc
import os
import subprocess
import sys

import pytest
from sqlalchemy import event

from auth_server import create_app
from shared.service.settings import PROJECT_ROOT
from tests.processes import settings_env
from tests.support import ALICE, AuthServer, auth_settings

POLL_NEVER = 10**9


def another_worker(serve, auth: AuthServer, **overrides) -> AuthServer:
    server = serve()
    settings = auth_settings(
        auth.settings.auth_database_url, auth.settings.auth_issuer, **overrides
    )
    app = create_app(settings)
    server.mount(app)
    return AuthServer(url=server.url, app=app, settings=settings, server=server)


def token_reads(app) -> list[str]:
    """The statements `app`'s introspection runs against the access_tokens table, from now on."""
    statements: list[str] = []
    engine = app.extensions["tessera"].reader

    @event.listens_for(engine, "before_cursor_execute")
    def count(_conn, _cursor, statement, *_args):
        if "FROM access_tokens" in statement:
            statements.append(statement)

    return statements


def test_a_token_introspected_again_is_answered_from_memory(auth):
    token = auth.login()["access_token"]
    reads = token_reads(auth.app)

    answers = [auth.introspect(token).json() for _ in range(5)]

    assert len(reads) == 1
    assert all(answer == answers[0] for answer in answers)
    assert answers[0]["active"] is True


def test_without_memory_every_introspection_reads_the_database(serve, auth):
    worker = another_worker(serve, auth, introspection_memory=False)
    token = auth.login()["access_token"]
    reads = token_reads(worker.app)

    for _ in range(3):
        assert worker.introspect(token).json()["active"] is True

    assert len(reads) == 3


REVOCATIONS = {
    "revoke the access token": lambda auth, tokens: auth.revoke(tokens["access_token"]),
    "log out (revoke the refresh token)": lambda auth, tokens: auth.revoke(
        tokens["refresh_token"], token_type_hint="refresh_token"
    ),
    "reuse a rotated refresh token": lambda auth, tokens: (
        auth.refresh(tokens["refresh_token"]),
        auth.refresh(tokens["refresh_token"]),
    ),
}


@pytest.mark.parametrize("revoke", REVOCATIONS.values(), ids=REVOCATIONS.keys())
def test_a_revocation_at_one_worker_bites_at_once_at_another(serve, auth, revoke):
    worker = another_worker(serve, auth, introspection_memory_poll_ms=POLL_NEVER)
    tokens = auth.login()
    for server in (auth, worker):
        for _ in range(2):
            assert server.introspect(tokens["access_token"]).json()["active"] is True

    revoke(auth, tokens)

    assert worker.introspect(tokens["access_token"]).json() == {"active": False}
    assert auth.introspect(tokens["access_token"]).json() == {"active": False}


@pytest.mark.live  # the operator CLI in its own process
@pytest.mark.parametrize("command", [["users", "disable"], ["users", "revoke-tokens"]])
def test_a_revocation_by_the_cli_in_another_process_bites_at_once(serve, auth, command):
    worker = another_worker(serve, auth, introspection_memory_poll_ms=POLL_NEVER)
    token = auth.login()["access_token"]
    assert worker.introspect(token).json()["active"] is True

    subprocess.run(
        [sys.executable, "-m", "auth_server", *command, ALICE[0]],
        env={**os.environ, **settings_env(worker.settings), "PYTHONPATH": str(PROJECT_ROOT)},
        cwd=PROJECT_ROOT,
        check=True,
        capture_output=True,
    )

    assert worker.introspect(token).json() == {"active": False}


def test_another_host_learns_of_a_revocation_by_polling_the_database(serve, auth, tmp_path):
    """Its own generation file: only the database's generation reaches it, at its next poll
    (1 ms here). With a poll it never reaches, it still answers from memory: the bound is the
    poll interval, nothing shorter."""
    polling = another_worker(
        serve, auth, introspection_memory_dir=str(tmp_path), introspection_memory_poll_ms=1
    )
    (tmp_path / "never").mkdir()
    not_polling = another_worker(
        serve,
        auth,
        introspection_memory_dir=str(tmp_path / "never"),
        introspection_memory_poll_ms=POLL_NEVER,
    )
    token = auth.login()["access_token"]
    for server in (polling, not_polling):
        assert server.introspect(token).json()["active"] is True

    assert auth.revoke(token).status_code == 200

    assert polling.introspect(token).json() == {"active": False}
    assert not_polling.introspect(token).json()["active"] is True


def test_apps_that_are_gone_leave_no_descriptor_open(tmp_path):
    """Each app maps its database's generation file; a process that makes many apps (this
    suite made thousands) must not keep a descriptor per app, or select() in the fault tests'
    TCP proxy failed past 1,024 of them."""

    def descriptors() -> int:
        return len(os.listdir("/proc/self/fd"))

    gc.collect()
    before = descriptors()
    for number in range(30):
        app = create_app(
            auth_settings(f"sqlite:///{tmp_path}/{number}.sqlite3", "http://127.0.0.1:8000"),
            create_tables=True,
        )
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()
        del app
    gc.collect()

    assert descriptors() - before < 10
