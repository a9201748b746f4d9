"""Audit rows written after the answer, in batches: the `token_issued` rows of self-contained
client_credentials tokens (auth_server/self_contained.py), whose issuance otherwise writes
nothing.

The event is logged and counted before the answer, as every audit event is (AuditTrail.publish);
only its row in `audit_events` comes later: a background thread of the worker inserts what has
queued every `interval` seconds (at once when `max_batch` rows wait), in one transaction. What
is lost if the worker is killed (SIGKILL, OOM) is at most the rows of the last interval, which
the log still holds; a graceful stop (SIGTERM) writes them first (`close`, run at exit). If the
database is unreachable, the rows are kept and tried again (every second), up to
`max_pending` rows; beyond that the oldest are dropped, each drop logged. A batch the database
can never take (a missing table, a refused row) is dropped and logged at once.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections.abc import Mapping
from typing import Any

from sqlalchemy import insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError

from auth_server.models import AuditEvent
from shared.service.database import cooperative_waits

log = logging.getLogger("tessera.audit")

_INSERT = insert(AuditEvent.__table__)


class AuditBuffer:
    """Queues audit rows (audit.event_row) and inserts them from a background thread."""

    def __init__(
        self,
        engine: Engine,
        interval: float = 0.05,
        max_batch: int = 500,
        max_pending: int = 100_000,
    ):
        self._engine = engine
        self._interval = interval
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._lock = threading.Lock()
        # Held while a batch is taken and written: `flush` returns only once what was queued
        # before it is in the table, including a batch the writer thread had already taken.
        self._writing = threading.Lock()
        self._rows: list[Mapping[str, Any]] = []
        self._wake = threading.Event()
        self._closed = False
        # The writer thread belongs to the process that started it: a forked worker starts its own.
        self._writer_pid: int | None = None
        self.dropped = 0

    def add(self, row: Mapping[str, Any]) -> None:
        with self._lock:
            if self._writer_pid != os.getpid():
                self._start_writer()
            self._rows.append(row)
            waiting = len(self._rows)
            overflow = waiting - self._max_pending
            if overflow > 0:
                del self._rows[:overflow]
                self.dropped += overflow
        if overflow > 0:
            log.error("audit buffer full: dropped %d audit rows (still in the log)", overflow)
        if waiting >= self._max_batch:
            self._wake.set()

    def flush(self) -> bool:
        """Insert every queued row now, in this thread (tests; `close`); False if the
        database refused (the rows stay queued)."""
        while True:
            written = self._write_batch()
            if written is None:
                return True
            if not written:
                return False

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self.flush()

    def _start_writer(self) -> None:
        self._writer_pid = os.getpid()
        buffer = weakref.ref(self)
        thread = threading.Thread(
            target=_write_while_alive, args=(buffer, self._wake, self._interval), daemon=True
        )
        thread.name = "audit-buffer"
        thread.start()
        atexit.register(_close_if_alive, buffer)

    def _write_batch(self) -> bool | None:
        """Insert up to max_batch queued rows: True if written (or dropped: the database can
        never take them), False if it refused them for now (put back), None if nothing was
        queued."""
        with self._writing:
            with self._lock:
                batch = self._rows[: self._max_batch]
                del self._rows[: self._max_batch]
            if not batch:
                return None
            try:
                with self._engine.begin() as connection:
                    if connection.dialect.name == "postgresql":
                        with cooperative_waits(connection.connection.driver_connection):
                            connection.execute(_INSERT, batch)
                    else:
                        connection.execute(_INSERT, batch)
            except (OperationalError, InterfaceError) as exc:
                # The database is unreachable or restarting: keep the rows, try again later.
                log.error("could not write %d audit rows (%s); will try again", len(batch), exc)
                with self._lock:
                    self._rows[:0] = batch
                return False
            except SQLAlchemyError:
                # Anything else (a missing table, a row it refuses) would fail every time.
                log.exception("dropped %d audit rows the database refuses", len(batch))
                self.dropped += len(batch)
            return True


# After the database refused a batch, the writer waits this long (not `interval`) to try again.
RETRY_SECONDS = 1.0


def _write_while_alive(
    buffer: weakref.ref[AuditBuffer], wake: threading.Event, interval: float
) -> None:
    # Holds the buffer only while writing, so an app that is gone (tests make thousands) frees
    # it and this thread ends.
    wait = interval
    while True:
        wake.wait(wait)
        wake.clear()
        live = buffer()
        if live is None or live._closed:
            return
        wait = interval if live.flush() else RETRY_SECONDS
        del live


def _close_if_alive(buffer: weakref.ref[AuditBuffer]) -> None:
    live = buffer()
    if live is not None:
        live.close()
