"""What the fast paths of introspection and issuance give up, and what they must not.

- An access-token-only issuance (client_credentials) commits without waiting for PostgreSQL's
  WAL flush; every issuance that writes a refresh token or an authorization code still waits.
  Either way the token is active to introspection as soon as the client holds it.
- The pool is not pre-pinged: introspection, a read, survives connections the database dropped
  by trying once more on a fresh one, and the request after it finds a fresh pool.
"""

from __future__ import annotations

import pytest
from sqlalchemy import event, text

from auth_server.db import db
from tests.databases import TEST_DATABASE_URL, admin_engine
from tests.support import SERVICE_APP, start_auth_server

# What the single autocommit statement of client_credentials' lean path
# (auth_server/protocol/client_credentials.py) runs first: it sets synchronous_commit for the
# statement's own transaction, which commits when the statement ends.
_ASYNCHRONOUS_STATEMENT = "set_config('synchronous_commit', 'off', true)"


def _commit_settings(app) -> list[str]:
    """Record `synchronous_commit` as each transaction of `app` that stored an access token
    reaches its COMMIT (for a statement in autocommit: what the statement sets it to)."""
    seen: list[str] = []
    minting: set[int] = set()
    with app.app_context():
        engine = db.engine
    if engine.dialect.name != "postgresql":
        return seen

    @event.listens_for(engine, "after_cursor_execute")
    def _executed(connection, _cursor, statement, *_args) -> None:
        if "INSERT INTO access_tokens" not in statement:
            return
        dbapi_connection = connection.connection.dbapi_connection
        if dbapi_connection.autocommit:
            seen.append("off" if _ASYNCHRONOUS_STATEMENT in statement else "on")
        else:
            minting.add(id(dbapi_connection))

    @event.listens_for(engine, "commit")
    def _before_commit(connection) -> None:
        if id(connection.connection.dbapi_connection) not in minting:
            return
        minting.discard(id(connection.connection.dbapi_connection))
        cursor = connection.connection.dbapi_connection.cursor()
        cursor.execute("SHOW synchronous_commit")
        seen.append(cursor.fetchone()[0])
        cursor.close()

    return seen


def test_client_credentials_commit_skips_the_wal_wait_and_the_token_is_active_at_once(
    serve, make_database_url, database_backend
):
    # Stored client_credentials tokens: a self-contained one commits nothing to skip.
    auth = start_auth_server(serve, make_database_url("auth"), client_credentials_tokens="stored")
    seen = _commit_settings(auth.app)
    for _ in range(3):
        response = auth.token(SERVICE_APP, grant_type="client_credentials")
        assert response.status_code == 200, response.text
        # Visible to every other connection the moment COMMIT returned.
        assert auth.is_active(response.json()["access_token"])
    if database_backend == "postgresql":
        assert seen == ["off", "off", "off"]


def test_logins_and_refreshes_still_wait_for_the_disk(serve, make_database_url, database_backend):
    auth = start_auth_server(serve, make_database_url("auth"))
    seen = _commit_settings(auth.app)
    login = auth.login()
    refreshed = auth.refresh(login["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert auth.is_active(refreshed.json()["access_token"])
    if database_backend == "postgresql":
        assert seen and set(seen) == {"on"}


@pytest.mark.skipif(not TEST_DATABASE_URL, reason="drops PostgreSQL connections")
@pytest.mark.parametrize("database_backend", ["postgresql"], indirect=True)
def test_introspection_answers_through_connections_the_database_dropped(
    serve, make_database_url, database_backend
):
    auth = start_auth_server(serve, make_database_url("auth"))
    with auth.app.app_context():
        engine = db.engine
    backends: set[int] = set()
    event.listen(
        engine, "checkout", lambda dbapi, _record, _proxy: backends.add(dbapi.info.backend_pid)
    )
    token = auth.token(SERVICE_APP, grant_type="client_credentials").json()["access_token"]
    assert auth.is_active(token)
    assert backends
    with admin_engine().connect() as admin:
        for pid in backends:
            # waits (up to 5 s) until the backend is gone, so the pool holds dead connections
            assert admin.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})
    backends.clear()

    response = auth.introspect(token)
    assert response.status_code == 200, response.text
    assert response.json()["active"] is True
    # The failed attempt discarded the whole pool: the next request needs no retry of its own.
    issued = auth.token(SERVICE_APP, grant_type="client_credentials")
    assert issued.status_code == 200, issued.text


@pytest.mark.skipif(not TEST_DATABASE_URL, reason="PostgreSQL's commit settings")
def test_a_statement_in_autocommit_sets_synchronous_commit_for_its_own_transaction_alone():
    """What the lean client_credentials statement relies on: set_config(..., true) inside one
    autocommit statement holds until that statement's implicit transaction ends (so for its
    COMMIT), and the connection's next statement is back to the server's setting."""
    with admin_engine().connect() as admin:
        connection = admin.execution_options(isolation_level="AUTOCOMMIT")
        during = connection.scalar(
            text(
                f"WITH guard AS (SELECT {_ASYNCHRONOUS_STATEMENT} AS asynchronous) "
                "SELECT current_setting('synchronous_commit') FROM guard"
            )
        )
        after = connection.scalar(text("SHOW synchronous_commit"))
    assert (during, after) == ("off", "on")
