"""Group commit: the writes of requests that arrive together go to the database as one statement.

A client_credentials token costs one round trip to PostgreSQL and one statement there (the
epoch guard, the token row, the audit row: protocol/client_credentials.py). At a few hundred
tokens a second per worker, that statement's fixed costs (the round trip, the executor, the
commit, the driver and SQLAlchemy around it) were as much as the whole rest of the answer. Every
requester still waits for its own row to be committed before it answers (so a token is known to
introspection before the client holds it), but the requests that arrive while a statement is
in flight do not each send their own: the first of them to arrive after it ("the leader") takes
them all and writes them in one statement when the one in flight returns. One requester alone
writes alone, as before; under load a batch holds what arrived during one round trip, which is
what makes the wait cost nothing extra: it is the wait for a round trip that had to happen.

The leader hands on: once its batch is written it wakes the first requester queued since, who
becomes the next leader, so no request writes more than its own batch. A statement-level error
(integrity, data) in a batch of several is retried one row at a time, so one bad row fails only
its own request; any other error (the database is down) fails the batch's requests with it.

Works in gevent workers (threading is monkey-patched: the waits yield to other greenlets) and
with real threads alike; a sync worker simply always writes batches of one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from sqlalchemy.exc import DataError, IntegrityError, OperationalError

Row = TypeVar("Row")
Result = TypeVar("Result")

# A statement with more rows than this is split: a bound on its size and on what one error fails.
MAX_BATCH = 64
# Statement-level errors that one row can cause: retried one row at a time.
_ROW_ERRORS = (IntegrityError, DataError)


class _Request(Generic[Row, Result]):
    __slots__ = ("row", "done", "lead", "result", "error", "answered")

    def __init__(self, row: Row) -> None:
        self.row = row
        self.done = threading.Event()
        self.lead = False
        self.result: Result | None = None
        self.error: BaseException | None = None
        self.answered = False


class GroupCommit(Generic[Row, Result]):
    """Writes rows with `write(rows) -> results` (one result per row, in order), batching the
    rows of concurrent `submit` calls into one `write`."""

    def __init__(
        self,
        write: Callable[[Sequence[Row]], Sequence[Result]],
        max_batch: int = MAX_BATCH,
        on_written: Callable[[int], None] | None = None,
    ) -> None:
        self._write = write
        self._max_batch = max_batch
        # Told the size of each batch written (/metrics: the batching seen from outside).
        self._on_written = on_written
        self._lock = threading.Lock()
        self._queue: list[_Request[Row, Result]] = []
        self._writing = False
        # How many statements and rows were written (the batching at work: tests, /metrics).
        self.statements = 0
        self.rows = 0

    def submit(self, row: Row) -> Result:
        """`row`'s result, once the statement holding it has committed (or its error)."""
        request: _Request[Row, Result] = _Request(row)
        with self._lock:
            self._queue.append(request)
            if self._writing:
                leads = False
            else:
                self._writing = leads = True
        if not leads:
            request.done.wait()
            leads = request.lead
        if leads:
            self._lead()
        if request.error is not None:
            raise request.error
        return request.result  # type: ignore[return-value]

    def _lead(self) -> None:
        """Write what is queued (this leader's own request first among them), then hand on."""
        with self._lock:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
        try:
            self._write_batch(batch)
        finally:
            with self._lock:
                successor = self._queue[0] if self._queue else None
                if successor is None:
                    self._writing = False
            for request in batch:
                if not request.answered:
                    # The leader was interrupted (a worker timeout, a killed greenlet) while it
                    # wrote: whether the rows committed is unknown, so none may be answered OK.
                    # An OperationalError: the app answers it as the database being unavailable.
                    request.error = OperationalError(
                        "group commit", None, InterruptedError("the batch's leader was interrupted")
                    )
                request.done.set()
            if successor is not None:
                successor.lead = True
                successor.done.set()

    def _write_batch(self, batch: list[_Request[Row, Result]]) -> None:
        try:
            results = self._write([request.row for request in batch])
        except _ROW_ERRORS as error:
            if len(batch) == 1:
                batch[0].error = error
                batch[0].answered = True
                return
            for request in batch:
                self._write_batch([request])
            return
        except Exception as error:  # noqa: BLE001 - each requester raises it as its own
            for request in batch:
                request.error = error
                request.answered = True
            return
        self.statements += 1
        self.rows += len(batch)
        if self._on_written is not None:
            self._on_written(len(batch))
        for request, result in zip(batch, results, strict=True):
            request.result = result
            request.answered = True
