"""The gunicorn worker of gunicorn.conf.py: gevent's, accepting a connection only while it holds
no more open connections than the least loaded worker of its service.

Every worker of a service accepts from the one listening socket, and a kept-alive connection
stays for its whole life with the worker that accepted it. Which worker accepts is a race: a
client that opens its connections at once (wrk's 16, a proxy's pool, the resource server's
introspection pool) often found one worker awake and gave it nearly all of them (15/1 and 1487
requests against 4 were measured, docs/benchmarks.md), so one core served while the other
idled. Here each worker publishes its count of open connections in a table shared by the
workers (an anonymous shared mapping made by the master before it forks); a worker that holds
more than the least loaded one leaves a waiting connection to it, looking again every
DEFER_STEP_S and taking it anyway after MAX_DEFER_S, so a worker that is stuck or busy for a
while delays a new connection by at most that.
"""

from __future__ import annotations

import mmap
import time
from typing import Any

from gevent.server import StreamServer
from gunicorn.workers import ggevent

from shared.service import coalescing_response

DEFER_STEP_S = 0.001
MAX_DEFER_S = 0.05
_SLOTS = 256


class ConnectionTable:
    """Open connections per worker, in memory shared across fork(); a slot holds count + 1,
    0 when no live worker owns it."""

    def __init__(self, slots: int = _SLOTS) -> None:
        self._slots = slots
        # fileno -1: anonymous; MAP_SHARED (the default): writes are seen by every forked child.
        self._map = mmap.mmap(-1, slots * 4)
        self._counts = memoryview(self._map).cast("i")

    def slot(self, worker_age: int) -> int:
        # gunicorn numbers the workers it spawns (age); two live workers share a slot only if
        # their ages differ by a multiple of the table size, and then they only defer less.
        return worker_age % self._slots

    def publish(self, slot: int, open_connections: int) -> None:
        self._counts[slot] = open_connections + 1

    def clear(self, slot: int) -> None:
        self._counts[slot] = 0

    def fewest(self) -> int | None:
        live = [count for count in self._counts if count]
        return min(live) - 1 if live else None


# Made when the master imports this module (gunicorn.conf.py names the worker class), so the
# workers it forks share it.
TABLE = ConnectionTable()


class _BalancedStreamServer(StreamServer):  # type: ignore[misc]  # gevent ships no types
    worker: BalancedGeventWorker

    _defer_timer: Any = None
    _deferring_since: float | None = None

    def do_read(self) -> Any:
        if self._should_defer():
            self.stop_accepting()
            if self._defer_timer is None:
                self._defer_timer = self.loop.timer(DEFER_STEP_S)
            self._defer_timer.start(self._start_accepting_if_started)
            return None
        self._deferring_since = None
        accepted = super().do_read()
        if accepted:
            self.worker.connection_opened()
        return accepted

    def _should_defer(self) -> bool:
        fewest = TABLE.fewest()
        if fewest is None or self.worker.open_connections <= fewest:
            return False
        now = time.monotonic()
        if self._deferring_since is None:
            self._deferring_since = now
        return now - self._deferring_since < MAX_DEFER_S

    def stop(self, *args: Any, **kwargs: Any) -> None:
        if self._defer_timer is not None:
            self._defer_timer.close()
            self._defer_timer = None
        super().stop(*args, **kwargs)


class BalancedGeventWorker(ggevent.GeventWorker):  # type: ignore[misc]  # gunicorn: no types
    open_connections = 0
    _balanced = False

    def init_process(self) -> None:
        # This process is the worker alone (after fork): the change reaches no other code.
        coalescing_response.install()
        self._slot = TABLE.slot(self.age)
        TABLE.publish(self._slot, 0)
        super().init_process()

    def run(self) -> None:
        if self.cfg.workers > 1:
            # GeventWorker.run builds its servers from this module-level name; this process is
            # the worker alone, so the change reaches no other code.
            worker = self

            class Server(_BalancedStreamServer):
                pass

            Server.worker = worker
            ggevent.StreamServer = Server
            self._balanced = True
        super().run()

    def connection_opened(self) -> None:
        self.open_connections += 1
        TABLE.publish(self._slot, self.open_connections)

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        try:
            super().handle(listener, client, addr)
        finally:
            if self._balanced:  # counted at accept (do_read), where the decision is taken
                self.open_connections -= 1
                TABLE.publish(self._slot, self.open_connections)


def worker_exited(worker_age: int) -> None:
    """The master's child_exit: a dead worker's slot no longer counts as the least loaded."""
    TABLE.clear(TABLE.slot(worker_age))
