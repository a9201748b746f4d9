"""The audit buffer (auth_server/audit_buffer.py): rows queued on the request path reach the
audit table from a background thread within its interval, at once when a batch is full, and
survive a database that refuses them for a while; beyond its bound the oldest are dropped and
counted. A real SQLite database and real threads."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import create_engine, event, func, select
from sqlalchemy.exc import OperationalError, ProgrammingError

from auth_server.audit import event_row
from auth_server.audit_buffer import AuditBuffer
from auth_server.models import AuditEvent


@pytest.fixture
def engine(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path}/audit.sqlite3")
    AuditEvent.__table__.create(engine)
    yield engine
    engine.dispose()


def _row(n: int) -> dict:
    row, _ = event_row("token_issued", actor="client:c", at=1000 + n, client_id="c", jti=f"j{n}.0")
    return row


def _stored(engine) -> int:
    with engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(AuditEvent.__table__))


def _eventually(predicate, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_queued_rows_are_written_by_the_background_thread_within_the_interval(engine):
    buffer = AuditBuffer(engine, interval=0.05)
    for n in range(3):
        buffer.add(_row(n))
    assert _eventually(lambda: _stored(engine) == 3)
    with engine.connect() as connection:
        details = connection.scalars(select(AuditEvent.detail).order_by(AuditEvent.id)).all()
    assert details == [_row(n)["detail"] for n in range(3)]
    buffer.close()


def test_a_full_batch_is_written_without_waiting_for_the_interval(engine):
    buffer = AuditBuffer(engine, interval=3600, max_batch=10)
    for n in range(10):
        buffer.add(_row(n))
    assert _eventually(lambda: _stored(engine) == 10, seconds=3)
    buffer.close()


def test_rows_the_database_refuses_are_kept_and_written_once_it_accepts(engine):
    buffer = AuditBuffer(engine, interval=3600)
    refusing = [True]

    def refuse(*_args):
        if refusing[0]:
            raise OperationalError("INSERT", None, ConnectionError("simulated: database down"))

    event.listen(engine, "before_cursor_execute", refuse)
    buffer.add(_row(1))
    buffer.add(_row(2))
    assert buffer.flush() is False
    refusing[0] = False
    assert buffer.flush() is True
    event.remove(engine, "before_cursor_execute", refuse)
    assert _stored(engine) == 2
    buffer.close()


def test_rows_the_database_can_never_take_are_dropped_and_counted_not_retried(engine):
    buffer = AuditBuffer(engine, interval=3600)

    def refuse_for_good(*_args):
        raise ProgrammingError("INSERT", None, LookupError('simulated: relation "audit_events"'))

    event.listen(engine, "before_cursor_execute", refuse_for_good)
    buffer.add(_row(1))
    assert buffer.flush() is True
    event.remove(engine, "before_cursor_execute", refuse_for_good)
    assert buffer.dropped == 1
    buffer.add(_row(2))
    buffer.close()
    assert _stored(engine) == 1


def test_flush_waits_for_the_batch_the_writer_thread_is_writing(engine):
    buffer = AuditBuffer(engine, interval=0.001)
    for round_ in range(50):
        buffer.add(_row(round_))
        buffer.flush()
        assert _stored(engine) == round_ + 1
    buffer.close()


def test_beyond_its_bound_the_oldest_rows_are_dropped_and_counted(engine):
    buffer = AuditBuffer(engine, interval=3600, max_pending=5)
    for n in range(8):
        buffer.add(_row(n))
    assert buffer.dropped == 3
    buffer.flush()
    with engine.connect() as connection:
        kept = connection.scalars(select(AuditEvent.at).order_by(AuditEvent.at)).all()
    assert kept == [1003, 1004, 1005, 1006, 1007]
    buffer.close()


def test_close_writes_what_is_queued(engine):
    buffer = AuditBuffer(engine, interval=3600)
    buffer.add(_row(1))
    buffer.close()
    assert _stored(engine) == 1
