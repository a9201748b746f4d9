"""A token is signed, its row is written, and then the transaction never commits (the database
fails at COMMIT, or the process dies there): the client must get no token, and nothing of it
may be left in the database. A token a client holds is always one introspection knows.

Two injection points: right after the statement that wrote the access token (the rows were
sent, the COMMIT was never issued) and the driver's COMMIT itself raising the driver's own
error, as a dropped connection or a full disk would. Both watch statements, not the ORM: the
lean client_credentials path (auth_server/protocol/client_credentials.py) writes with Core. On
PostgreSQL it writes in ONE autocommit statement, which commits as it ends; there is no moment
between its write and its commit, so both faults strike as that statement arrives: the
database is lost (the backend really dies at the driver_commit point).
"""

from __future__ import annotations

import base64
import json
import sqlite3
import threading

import psycopg
import pytest
from flask import Flask
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError

from auth_server.db import db
from auth_server.models import AccessToken, AuditEvent, RefreshFamily, RefreshToken
from tests.support import DEMO_APP, SERVICE_APP, start_auth_server

pytestmark = pytest.mark.slow


def _raw_connection(connection):
    """The driver connection behind a pool proxy (SQLAlchemy hands out either)."""
    return getattr(connection, "dbapi_connection", connection)


def _raw(connection) -> int:
    return id(_raw_connection(connection))


def _claims(jwt: str) -> dict:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _writes_access_token(statement: str) -> bool:
    return "INSERT INTO access_tokens" in statement


def _autocommit(connection) -> bool:
    return bool(getattr(_raw_connection(connection), "autocommit", False))


class CommitFault:
    """While armed, fails the commit of every transaction that inserted an access token."""

    def __init__(self, app: Flask, point: str) -> None:
        self.app = app
        self.point = point
        with app.app_context():
            self.engine = db.engine
        self.armed = False
        self.failed = 0
        self._doomed: set[int] = set()  # ids of DBAPI connections holding a minted token
        self._original_commit = self.engine.dialect.do_commit
        self._hooks = (
            ("before_cursor_execute", self._before_execute),
            ("after_cursor_execute", self._after_execute),
            ("rollback", self._rolled_back),
        )

    def __enter__(self) -> CommitFault:
        for name, hook in self._hooks:
            event.listen(self.engine, name, hook)
        if self.point == "driver_commit":
            self.engine.dialect.do_commit = self._do_commit
        return self

    def __exit__(self, *exc_info) -> None:
        for name, hook in self._hooks:
            event.remove(self.engine, name, hook)
        self.engine.dialect.do_commit = self._original_commit

    # A statement in autocommit writes and commits at once: the fault meets it as it arrives.
    def _before_execute(self, connection, _cursor, statement, *_args) -> None:
        if not (
            self.armed and _writes_access_token(statement) and _autocommit(connection.connection)
        ):
            return
        self.failed += 1
        if self.point == "driver_commit":
            # The server process dies: the statement meets a dead connection.
            self._terminate(_raw_connection(connection.connection).info.backend_pid)
        else:
            raise OperationalError(statement, None, ConnectionError("simulated: database lost"))

    # after_flush: the INSERT reached the database inside the transaction; fail before COMMIT.
    # driver_commit: remember which connection minted a token, then fail its COMMIT the way the
    # driver does when the server goes away (SQLAlchemy wraps it, as in production).
    def _after_execute(self, connection, _cursor, statement, *_args) -> None:
        if not _writes_access_token(statement) or _autocommit(connection.connection):
            return
        if self.point == "driver_commit":
            self._doomed.add(_raw(connection.connection))
        elif self.armed:
            self.failed += 1
            raise OperationalError("COMMIT", None, ConnectionError("simulated: database lost"))

    def _rolled_back(self, connection) -> None:
        if connection.invalidated:  # its driver connection is gone: nothing to forget
            return
        self._doomed.discard(_raw(connection.connection))

    def _do_commit(self, dbapi_connection) -> None:
        doomed = _raw(dbapi_connection) in self._doomed
        self._doomed.discard(_raw(dbapi_connection))
        if self.armed and doomed:
            self.failed += 1
            if self.engine.dialect.name == "sqlite":
                # What SQLite answers when the disk fails at COMMIT; the transaction may stay
                # open (https://sqlite.org/lang_transaction.html), so it does here.
                raise sqlite3.OperationalError("disk I/O error")
            # PostgreSQL: the server process really dies, so COMMIT meets a dead connection
            # and the server rolls the transaction back.
            self._terminate(_raw_connection(dbapi_connection).info.backend_pid)
        self._original_commit(dbapi_connection)

    def _terminate(self, backend_pid: int) -> None:
        conninfo = self.engine.url.set(drivername="postgresql", query={})
        with psycopg.connect(conninfo.render_as_string(hide_password=False)) as admin:
            # The timeout makes it wait until the backend is gone, so COMMIT cannot beat it.
            admin.execute("SELECT pg_terminate_backend(%s, 5000)", (backend_pid,))


class ResponseAudit:
    """WSGI middleware: when a token response starts, the transaction that stored its access
    token must already have committed (the engine's commit events, and the end of a statement
    in autocommit, record committed jtis). This is the code-path half of the proof: no token
    leaves before its row is durable."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        with app.app_context():
            self.engine = db.engine
        self.committed: set[str] = set()
        self.checked = 0
        self.violations: list[str] = []
        self._lock = threading.Lock()
        self._pending: dict[int, list[str]] = {}  # DBAPI connection -> jtis written, uncommitted
        self._hooks = (
            ("after_cursor_execute", self._executed),
            ("commit", self._committed),
            ("rollback", self._rolled_back),
        )

    def __enter__(self) -> ResponseAudit:
        for name, hook in self._hooks:
            event.listen(self.engine, name, hook)
        return self

    def __exit__(self, *exc_info) -> None:
        for name, hook in self._hooks:
            event.remove(self.engine, name, hook)

    def _executed(self, connection, _cursor, statement, _parameters, context, _many) -> None:
        if not _writes_access_token(statement):
            return
        minted: list[str] = []
        for params in context.compiled_parameters:
            if "rows" in params:
                # A group-committed batch of client_credentials tokens: its rows as one JSON array.
                minted.extend(row["jti"] for row in json.loads(params["rows"]))
            else:
                minted.append(params["jti"])
        with self._lock:
            if _autocommit(connection.connection):
                self.committed.update(minted)
            else:
                self._pending.setdefault(_raw(connection.connection), []).extend(minted)

    def _committed(self, connection) -> None:
        with self._lock:
            self.committed.update(self._pending.pop(_raw(connection.connection), []))

    def _rolled_back(self, connection) -> None:
        if connection.invalidated:  # its driver connection is gone, and what it wrote with it
            return
        with self._lock:
            self._pending.pop(_raw(connection.connection), None)

    def __call__(self, environ, start_response):
        seen: dict = {}

        def starting(status, headers, exc_info=None):
            with self._lock:
                seen["committed"] = set(self.committed)
            seen["status"] = status
            return start_response(status, headers, exc_info)

        body = b"".join(self.app(environ, starting))
        if environ.get("PATH_INFO") == "/oauth/token" and seen["status"].startswith("200"):
            jti = _claims(json.loads(body)["access_token"])["jti"]
            with self._lock:
                self.checked += 1
                if jti not in seen["committed"]:
                    self.violations.append(jti)
        return [body]


def _counts(app: Flask) -> dict[str, int]:
    with app.app_context():
        return {
            model.__tablename__: db.session.scalar(select(func.count()).select_from(model))
            for model in (AccessToken, RefreshToken, RefreshFamily, AuditEvent)
        }


def _refresh_row(app: Flask, value: str) -> RefreshToken:
    from shared.protocol.digests import sha256_hex

    with app.app_context():
        row = db.session.scalar(
            select(RefreshToken).where(RefreshToken.token_hash == sha256_hex(value))
        )
        db.session.expunge_all()
        return row


def _assert_unavailable(response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "temporarily_unavailable"
    assert "access_token" not in response.text
    assert int(response.headers["Retry-After"]) > 0


@pytest.mark.parametrize("point", ["after_flush", "driver_commit"])
def test_a_token_whose_commit_fails_never_reaches_the_client(serve, make_database_url, point):
    # Stored client_credentials tokens: a self-contained one commits nothing before its answer.
    auth = start_auth_server(serve, make_database_url("auth"), client_credentials_tokens="stored")
    with ResponseAudit(auth.app) as recorder, CommitFault(auth.app, point) as fault:
        auth.server.app = recorder
        login = auth.login()  # a refresh token to rotate under the fault
        before = _counts(auth.app)
        fault.armed = True
        _assert_unavailable(auth.token(SERVICE_APP, grant_type="client_credentials"))
        _assert_unavailable(
            auth.token(grant_type="password", username="alice", password="wonderland")
        )
        _assert_unavailable(auth.refresh(login["refresh_token"]))
        assert fault.failed == 3
        # Nothing of the three attempts was kept: no access token, no refresh token or family,
        # no audit event, and the presented refresh token was not consumed.
        assert _counts(auth.app) == before
        row = _refresh_row(auth.app, login["refresh_token"])
        assert row.consumed_at is None and row.family.revoked_at is None

        fault.armed = False
        # Without the fault, on the very sessions and pooled connections that just failed:
        # every token is introspectable the moment it is returned.
        for _ in range(5):
            issued = auth.token(SERVICE_APP, grant_type="client_credentials")
            assert issued.status_code == 200, issued.text
            assert auth.is_active(issued.json()["access_token"])
        # The refresh token whose rotation failed still rotates (no false reuse detection).
        rotated = auth.refresh(login["refresh_token"])
        assert rotated.status_code == 200, rotated.text
        assert auth.is_active(rotated.json()["access_token"])
        assert auth.is_active(rotated.json()["refresh_token"])
        fresh = auth.login(client=DEMO_APP)
        assert auth.is_active(fresh["access_token"]) and auth.is_active(fresh["refresh_token"])

    assert recorder.checked == 8 and recorder.violations == []
    print(
        f"\ncommit fault at {point}: 3 token requests -> 503, 0 rows kept; "
        f"{recorder.checked} token responses, each started after its commit"
    )
