"""auth_server/group_commit.py with real threads and an in-memory write function (the batching
logic alone; tests/auth_server/test_token_group_commit.py writes real batches to PostgreSQL)."""

from __future__ import annotations

import threading
import time

from sqlalchemy.exc import IntegrityError, OperationalError

from auth_server.group_commit import GroupCommit


class HeldWrites:
    """A write function that records each batch and holds the first one until released."""

    def __init__(self, fail_rows: frozenset[str] = frozenset(), error: Exception | None = None):
        self.batches: list[list[str]] = []
        self.first_started = threading.Event()
        self.release = threading.Event()
        self.fail_rows = fail_rows
        self.error = error

    def __call__(self, rows):
        self.batches.append(list(rows))
        if len(self.batches) == 1:
            self.first_started.set()
            assert self.release.wait(5)
        if self.error is not None:
            raise self.error
        if self.fail_rows.intersection(rows):
            raise IntegrityError("INSERT", None, Exception("duplicate key"))
        return [row.upper() for row in rows]


def submit_in_threads(group: GroupCommit, rows: list[str]) -> tuple[dict, list[threading.Thread]]:
    outcomes: dict[str, object] = {}

    def submit(row: str) -> None:
        try:
            outcomes[row] = group.submit(row)
        except BaseException as error:  # noqa: BLE001 - the outcome under test
            outcomes[row] = error

    threads = []
    for row in rows:
        thread = threading.Thread(target=submit, args=(row,))
        thread.start()
        threads.append(thread)
    return outcomes, threads


def wait_until_queued(group: GroupCommit, count: int) -> None:
    deadline = time.monotonic() + 5
    while len(group._queue) < count:  # noqa: SLF001 - the queue is what the test waits on
        assert time.monotonic() < deadline, "the requests did not queue"
        time.sleep(0.001)


def finish(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(5)
        assert not thread.is_alive()


def test_a_lone_request_writes_alone_and_gets_its_own_result():
    writes = HeldWrites()
    writes.release.set()
    group = GroupCommit(writes)
    assert group.submit("a") == "A"
    assert writes.batches == [["a"]]
    assert (group.statements, group.rows) == (1, 1)


def test_requests_arriving_during_a_write_are_written_together_in_one_statement():
    writes = HeldWrites()
    group = GroupCommit(writes)
    first, first_threads = submit_in_threads(group, ["first"])
    assert writes.first_started.wait(5)
    later, later_threads = submit_in_threads(group, ["b", "c", "d", "e"])
    wait_until_queued(group, 4)
    writes.release.set()
    finish(first_threads + later_threads)
    assert writes.batches[0] == ["first"]
    assert sorted(writes.batches[1]) == ["b", "c", "d", "e"]
    assert len(writes.batches) == 2
    assert first == {"first": "FIRST"}
    assert later == {"b": "B", "c": "C", "d": "D", "e": "E"}
    assert (group.statements, group.rows) == (2, 5)


def test_a_batch_never_exceeds_the_maximum():
    writes = HeldWrites()
    group = GroupCommit(writes, max_batch=2)
    _, first_threads = submit_in_threads(group, ["first"])
    assert writes.first_started.wait(5)
    outcomes, threads = submit_in_threads(group, ["b", "c", "d", "e", "f"])
    wait_until_queued(group, 5)
    writes.release.set()
    finish(first_threads + threads)
    assert [len(batch) for batch in writes.batches] == [1, 2, 2, 1]
    assert outcomes == {row: row.upper() for row in "bcdef"}


def test_a_row_that_breaks_its_batch_fails_alone():
    writes = HeldWrites(fail_rows=frozenset({"bad"}))
    group = GroupCommit(writes)
    _, first_threads = submit_in_threads(group, ["first"])
    assert writes.first_started.wait(5)
    outcomes, threads = submit_in_threads(group, ["b", "bad", "c"])
    wait_until_queued(group, 3)
    writes.release.set()
    finish(first_threads + threads)
    assert isinstance(outcomes.pop("bad"), IntegrityError)
    assert outcomes == {"b": "B", "c": "C"}
    # the batch of three, then each of its rows alone
    assert sorted(writes.batches[1]) == ["b", "bad", "c"]
    assert sorted(map(tuple, writes.batches[2:])) == [("b",), ("bad",), ("c",)]


def test_a_database_error_fails_every_request_of_the_batch():
    down = OperationalError("SELECT", None, Exception("connection refused"))
    writes = HeldWrites(error=down)
    group = GroupCommit(writes)
    first, first_threads = submit_in_threads(group, ["first"])
    assert writes.first_started.wait(5)
    later, threads = submit_in_threads(group, ["b", "c"])
    wait_until_queued(group, 2)
    writes.release.set()
    finish(first_threads + threads)
    assert {**first, **later} == {"first": down, "b": down, "c": down}
    assert len(writes.batches) == 2  # not retried row by row: the database is down


def test_an_interrupted_leader_fails_the_others_in_its_batch_and_the_group_goes_on():
    """A leader stopped while it writes (a worker timeout raises in its greenlet): nobody
    learns whether the rows committed, so no request of its batch may answer success; the
    requests after it are written as usual."""

    class Interrupted(BaseException):
        pass

    writes = HeldWrites()

    def write(rows):
        if writes.batches:  # the batch after the held first one
            writes.batches.append(list(rows))
            raise Interrupted
        return writes(rows)

    group = GroupCommit(write)
    _, first_threads = submit_in_threads(group, ["first"])
    assert writes.first_started.wait(5)
    outcomes, threads = submit_in_threads(group, ["b", "c"])
    wait_until_queued(group, 2)
    writes.release.set()
    finish(first_threads + threads)
    kinds = sorted(type(outcome).__name__ for outcome in outcomes.values())
    assert kinds == ["Interrupted", "OperationalError"]
    writes.batches.clear()
    assert group.submit("alone") == "ALONE"
    assert group._writing is False  # noqa: SLF001 - nobody is left leading a dead batch
