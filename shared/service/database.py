"""Engine options both services use, so SQLite and PostgreSQL behave the same under gunicorn.

SQLite (the embedded default) runs in WAL mode so readers never wait for the writer, and takes
the write lock when a transaction starts writing (``BEGIN IMMEDIATE``) instead of upgrading a
read lock later: two workers upgrading at once is what makes SQLite answer "database is locked"
at once, whatever the busy timeout. PostgreSQL gets a sized pool and a statement timeout so a
stuck database turns into a fast 503 instead of a hung worker.

Pre-pinging the pool (a `SELECT 1` before each checkout) is optional: it was a sixth of the
authorization server's time on introspection. Without it, the first statement on a connection
the database dropped fails; SQLAlchemy recognises the disconnect, invalidates that connection and
every other one the pool opened before it, so a restarted database costs one 503 per worker
(or nothing, where a read is retried once: auth_server/protocol/introspection.py), not one per
pooled connection.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import event
from sqlalchemy.engine import CursorResult, Engine, Result, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import scoped_session

from shared.service.settings import ServiceSettings
from shared.service.sqlite_writers import queue_sqlite_writers

log = logging.getLogger("tessera.database")

# A SQLite database holds password hashes and every user's notes: only the service's own user
# may read it. SQLite creates its -wal and -shm files with the mode of the database file.
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
SQLITE_COMPANION_SUFFIXES = ("-wal", "-shm", "-journal")


def affected_rows(result: Result[*tuple[Any, ...]]) -> int:
    """The rows an UPDATE or DELETE matched. Session.execute is typed as returning a Result; for
    those statements it is a CursorResult, the class that has `rowcount`."""
    return cast("CursorResult[*tuple[Any, ...]]", result).rowcount


# Named constraints keep Alembic migrations identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def engine_options(url: str, settings: ServiceSettings, *, pre_ping: bool = True) -> dict[str, Any]:
    """SQLAlchemy ``create_engine`` keyword arguments for this database URL. `pre_ping=False`
    for a service that handles a dropped connection itself (module docstring)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            prepare_private_sqlite_file(Path(parsed.database), Path(settings.instance_dir))
        return {
            "connect_args": {
                "timeout": settings.sqlite_busy_timeout_ms / 1000,
                "check_same_thread": False,
            },
        }
    options: dict[str, Any] = {
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": settings.db_pool_timeout,
        "pool_pre_ping": pre_ping,
        "pool_recycle": 1800,
    }
    if parsed.get_backend_name() == "postgresql":
        statement_timeout = f"-c statement_timeout={settings.db_statement_timeout_ms}"
        existing = parsed.query.get("options")
        options["connect_args"] = {
            "connect_timeout": max(1, int(settings.db_pool_timeout)),
            # keep any options given in the URL (tests pass search_path there)
            "options": f"{existing} {statement_timeout}" if existing else statement_timeout,
            # A database host that vanishes without a reset (network partition, dead VM) is
            # noticed in seconds, not after the kernel's default of two hours.
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
            "tcp_user_timeout": 30_000,
        }
    return options


def reader_engine(engine: Engine) -> Engine:
    """`engine` for single statements that read and write nothing: on PostgreSQL in autocommit,
    which saves the BEGIN and ROLLBACK round trips around them (the pool puts the connection
    back in its transactional mode on return). pysqlite runs a lone SELECT outside any
    transaction already."""
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    return engine


@contextmanager
def cooperative_waits(dbapi_connection: Any) -> Iterator[None]:
    """While in this block, a psycopg connection waits for PostgreSQL by yielding to the
    worker's other greenlets, where gevent has patched `select`.

    gunicorn.conf.py makes every psycopg wait block the worker (PSYCOPG_WAIT_FUNC=wait_c): for a
    sub-millisecond read, handing the worker round costs more than the wait. A write that
    batches the requests arriving while it is in flight (auth_server/group_commit.py) needs
    the opposite: blocked, the worker runs no other request, so none can join the next batch
    and every batch holds one row. Elsewhere (no gevent, or another driver) this does nothing.
    """
    gevent_monkey = sys.modules.get("gevent.monkey")
    if (
        gevent_monkey is None
        or not gevent_monkey.is_module_patched("select")
        or not hasattr(dbapi_connection, "pgconn")
    ):
        yield
        return
    from psycopg import waiting

    def wait(gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        # psycopg.Connection.wait without its Ctrl-C cancellation (a worker has no terminal);
        # gevent's patched poll() is what psycopg itself picks under gevent.
        return waiting.wait_poll(gen, dbapi_connection.pgconn.socket, interval, timeout)

    dbapi_connection.wait = wait
    try:
        yield
    finally:
        del dbapi_connection.wait


def prepare_private_sqlite_file(path: Path, instance_dir: Path) -> None:
    """Make the database file (and the folders missing on its way) private before SQLite opens
    it: folders 0700, the file 0600, created so before anything is written to it. A file or
    companion (-wal, -shm) left readable by an older version is tightened to 0600, and so is the
    service's own INSTANCE_DIR; other existing folders are left alone (the path may be in
    a shared one such as /tmp)."""
    make_private_dirs(path.parent)
    if path.parent.resolve() == instance_dir.resolve():
        _tighten(path.parent, PRIVATE_DIR_MODE)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        pass
    else:
        os.close(fd)
    for candidate in (path, *(path.with_name(path.name + s) for s in SQLITE_COMPANION_SUFFIXES)):
        _tighten(candidate, PRIVATE_FILE_MODE)


def _tighten(path: Path, mode: int) -> None:
    """chmod `path` to `mode` if group or others have any access to it."""
    try:
        if path.stat().st_mode & 0o077:
            path.chmod(mode)
    except FileNotFoundError:
        pass
    except PermissionError:
        log.warning("cannot make %s private (mode %o): not its owner", path, mode)


def make_private_dirs(directory: Path) -> None:
    """Create `directory` and any missing parents with mode 0700 (existing ones unchanged)."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_DIR_MODE)
        except FileExistsError:  # another process made it first
            continue
        # mkdir's mode passes through the umask, which may only narrow it; chmod says it exactly.
        folder.chmod(PRIVATE_DIR_MODE)


def configure_engine(engine: Engine, settings: ServiceSettings) -> None:
    """Install per-connection settings that SQLAlchemy has no keyword argument for."""
    if engine.dialect.name != "sqlite":
        return
    busy_ms = settings.sqlite_busy_timeout_ms

    @event.listens_for(engine, "connect")
    def _sqlite_on_connect(
        dbapi_connection: Any, _record: Any
    ) -> None:  # pragma: no cover - exercised via engine
        # pysqlite opens a transaction before the first INSERT/UPDATE/DELETE; make it IMMEDIATE.
        dbapi_connection.isolation_level = "IMMEDIATE"
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "reset")
    def _sqlite_on_reset(
        dbapi_connection: Any, _record: Any, _state: Any
    ) -> None:  # pragma: no cover - via engine
        # After a failed COMMIT SQLAlchemy skips its rollback-on-return (PostgreSQL has already
        # ended the transaction), but SQLite may keep it open: the write lock would stall every
        # other writer, and the next user of this connection would commit the failed rows.
        if dbapi_connection.in_transaction:
            dbapi_connection.rollback()

    # Writers of this process queue for SQLite's write lock (shared/service/sqlite_writers.py).
    queue_sqlite_writers(engine, busy_ms / 1000)


def end_sessions_without_failing(app: Flask, session: scoped_session[Any]) -> None:
    """Call right after `db.init_app(app)`: ends each request's session in place of
    Flask-SQLAlchemy's own teardown, and a connection that died after the request's last
    statement (the database went away meanwhile) is invalidated instead of failing the closing
    rollback. Otherwise the rollback's error escapes the app after the answer was made, and the
    client gets a 500 (tests/faults/test_database_down.py)."""
    # Flask-SQLAlchemy's teardown is session.remove(): close, then forget the session. This one
    # does both, so it replaces that one rather than running before it (one teardown function
    # per request, not two: each costs Flask a call and a context lookup even when the request
    # used no session, as /healthz does).
    app.teardown_appcontext_funcs[:] = [
        f
        for f in app.teardown_appcontext_funcs
        if getattr(f, "__func__", None) is not SQLAlchemy._teardown_session
    ]
    registry = session.registry
    # Flask-SQLAlchemy scopes sessions by app context: a ScopedRegistry, whose dict of live
    # sessions is empty unless some request in the process holds one. Looking at it first
    # spares has() (the scope function, a context lookup) to most requests that used none.
    live: dict[Any, Any] | None = getattr(registry, "registry", None)
    if not isinstance(live, dict):
        live = None

    @app.teardown_appcontext
    def _end_session(_exc: BaseException | None) -> None:
        if live is not None and not live:
            return  # no session in the process, so none for this request
        if not registry.has():
            return  # the request used no session: closing would first create one
        try:
            session.close()
        except SQLAlchemyError:
            # scoped_session does not proxy invalidate(): ask the request's own Session.
            registry().invalidate()
        finally:
            registry.clear()
