"""What the fault tests share besides fixtures: background load, and the PostgreSQL-only mark."""

from __future__ import annotations

import threading

import pytest

from tests.databases import TEST_DATABASE_URL

POSTGRES_ONLY = pytest.mark.skipif(
    not TEST_DATABASE_URL,
    reason="database-down faults need PostgreSQL reached over TCP through a proxy the test can "
    "cut; set TEST_DATABASE_URL=postgresql+psycopg://... to run them (an SQLite file cannot "
    "go away mid-request)",
)


class BackgroundLoad:
    """Threads that call `self._run(index)` until the `with` block ends (`self._stop` is set)."""

    join_timeout = 15.0

    def __init__(self, threads: int) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)
        ]

    def _run(self, index: int) -> None:
        raise NotImplementedError

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.join_timeout)
