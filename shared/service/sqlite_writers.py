"""SQLite writers wait for the write lock without stopping their worker.

SQLite has one writer at a time. A transaction that finds the write lock taken waits in
SQLite's busy handler, which sleeps in C with growing sleeps (up to 100 ms each). Under gevent
that sleep stops the whole worker, every greenlet in it, and the unlucky writer may sleep
through several rounds while writers of the other workers come and go: token issuance had a
p99 of 0.3 to 0.7 s (worst 1.5 s) at 16 connections.

Here, a transaction about to take SQLite's write lock (before its first INSERT, UPDATE, DELETE
or REPLACE, where pysqlite would issue BEGIN IMMEDIATE, shared/service/database.py):

- first takes this process's lock, and gives it back as soon as the transaction has ended
  (after COMMIT or ROLLBACK): the writers of a process wait their turn, woken the moment the
  lock is free. The lock is the threading module's, so under gevent (patched before the app
  starts) it is gevent's and a waiting greenlet yields to the others;
- then opens the transaction itself with BEGIN IMMEDIATE under a zero busy timeout, and while
  another process holds SQLite's lock, sleeps a millisecond or two with `time.sleep` (gevent's
  under gevent: the worker serves other requests meanwhile) and tries again, up to the busy
  timeout. Only then is the statement left to SQLite's busy handler, as before.

It adds no waiting that SQLite would not impose anyway: it is held exactly while SQLite's write
lock would be. If a thread (or greenlet) that already holds it writes on a second connection
(which SQLite would make wait for the first), it does not wait here: that is left to SQLite, as
before. And no writer waits here longer than the busy timeout: then it goes on to SQLite's busy
handler, which decides as it always did.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

# What pysqlite (in its default, legacy transaction control) opens a transaction for.
_WRITING = ("INSERT", "UPDATE", "DELETE", "REPLACE")
# Between two attempts at SQLite's write lock held by another process (a transaction there
# takes about a millisecond).
RETRY_SECONDS = 0.0005


class WriterQueue:
    """One per engine (per process): at most one of its connections holds it."""

    def __init__(self, wait_seconds: float) -> None:
        self.wait_seconds = wait_seconds
        self._lock: Any = None  # made on first use: after gevent has patched threading
        self._holder: int | None = None  # id() of the DBAPI connection holding it
        self._owner: int | None = None  # the thread (greenlet) that took it

    def before_write(self, dbapi_connection: Any) -> None:
        """Before a write: wait for the lock unless this connection's transaction has it."""
        if self._holder == id(dbapi_connection) or dbapi_connection.in_transaction:
            return
        me = threading.get_ident()
        if self._owner == me:
            return  # this thread already writes on another connection: SQLite decides
        if self._lock is None:
            self._lock = threading.Lock()
        deadline = time.monotonic() + self.wait_seconds
        if self._lock.acquire(timeout=self.wait_seconds):
            self._holder, self._owner = id(dbapi_connection), me
        self._begin_immediate(dbapi_connection, deadline)

    def _begin_immediate(self, dbapi_connection: Any, deadline: float) -> None:
        """Open the write transaction, waiting cooperatively while another process writes."""
        busy_ms = int(self.wait_seconds * 1000)
        dbapi_connection.execute("PRAGMA busy_timeout=0")
        try:
            while True:
                try:
                    dbapi_connection.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() >= deadline:
                        return  # the statement itself meets SQLite's busy handler, as before
                time.sleep(RETRY_SECONDS)
        finally:
            dbapi_connection.execute(f"PRAGMA busy_timeout={busy_ms}")

    def after_end(self, dbapi_connection: Any, *, closed: bool = False) -> None:
        """After COMMIT or ROLLBACK (or the connection's end): free the lock if this
        connection's transaction held it and is over."""
        if self._holder != id(dbapi_connection):
            return
        if not closed and dbapi_connection.in_transaction:
            return  # a failed COMMIT may leave it open: freed after the rollback
        self._holder = self._owner = None
        self._lock.release()


def queue_sqlite_writers(engine: Engine, wait_seconds: float) -> WriterQueue:
    """Install the queue on a SQLite engine (call after the engine's own reset hook)."""
    queue = WriterQueue(wait_seconds)
    dialect = engine.dialect
    commit, rollback = dialect.do_commit, dialect.do_rollback

    @event.listens_for(engine, "before_cursor_execute")
    def _before(
        connection: Any,
        _cursor: Any,
        statement: str,
        _parameters: Any,
        _context: Any,
        _executemany: bool,
    ) -> None:
        if statement.lstrip()[:7].upper().startswith(_WRITING):
            queue.before_write(connection.connection.dbapi_connection)

    # SQLAlchemy's commit and rollback events come before the driver call; the lock must be
    # freed after it, when SQLite's own write lock is gone.
    def do_commit(dbapi_connection: Any) -> None:
        try:
            commit(dbapi_connection)
        finally:
            queue.after_end(dbapi_connection)

    def do_rollback(dbapi_connection: Any) -> None:
        try:
            rollback(dbapi_connection)
        finally:
            queue.after_end(dbapi_connection)

    dialect.do_commit = do_commit  # type: ignore[method-assign]
    dialect.do_rollback = do_rollback  # type: ignore[method-assign]

    @event.listens_for(engine, "reset")
    def _reset(dbapi_connection: Any, _record: Any, _state: Any) -> None:
        # After shared/service/database.py's reset hook, which rolls back what a failed COMMIT left.
        queue.after_end(dbapi_connection)

    @event.listens_for(engine, "close")
    def _closed(dbapi_connection: Any, _record: Any) -> None:
        queue.after_end(dbapi_connection, closed=True)

    @event.listens_for(engine, "invalidate")
    def _invalidated(dbapi_connection: Any, _record: Any, _exception: Any) -> None:
        queue.after_end(dbapi_connection, closed=True)

    return queue
