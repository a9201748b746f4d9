"""shared.service.balanced_worker.ConnectionTable: what the workers of a service tell each
other (the accept behaviour under gunicorn:
tests/end_to_end/test_connection_balance_under_gunicorn.py)."""

from __future__ import annotations

import os

from shared.service.balanced_worker import ConnectionTable


def test_the_least_loaded_live_worker_is_found_and_a_dead_one_stops_counting():
    table = ConnectionTable(slots=8)
    assert table.fewest() is None
    table.publish(table.slot(1), 5)
    table.publish(table.slot(2), 3)
    assert table.fewest() == 3
    table.clear(table.slot(2))
    assert table.fewest() == 5


def test_counts_written_by_a_forked_child_are_seen_by_its_parent():
    table = ConnectionTable(slots=4)
    pid = os.fork()
    if pid == 0:  # the child: a worker
        table.publish(table.slot(3), 7)
        os._exit(0)
    os.waitpid(pid, 0)
    assert table.fewest() == 7
