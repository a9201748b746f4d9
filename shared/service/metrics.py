"""Prometheus metrics for a Flask service.

Each app gets its own registry, so tests can build many apps in one process. Under gunicorn,
PROMETHEUS_MULTIPROC_DIR is set (gunicorn.conf.py does it): every worker writes its samples
there, and the gunicorn master serves them, aggregated, on a listener of its own
(`serve_multiprocess_metrics`, METRICS_BIND). The service's public port has no /metrics route:
what it counts (token issuance, revocations, introspection results) is for the operator only,
and a scrape through the public port would be one more way to load the service.

Requests are labelled by route template (`/api/notes/<int:note_id>`), never by raw path, so
an attacker cannot blow up the number of time series.
"""

from __future__ import annotations

import _thread
import os
import struct
import weakref
from bisect import bisect_left
from collections.abc import Callable
from typing import Any
from wsgiref.simple_server import WSGIServer

from flask import Flask
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector

from shared.service import request_id

# The route template requests are counted by (set by the request bookkeeping, or by an answer
# made below Flask: auth_server/introspection_wsgi.py).
ENDPOINT_KEY = request_id.ENDPOINT_KEY
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# What one request moves (Metrics._recorder_of): its count, the sum of durations, and the bucket
# whose upper bound is the first not below its duration, found by bisection of the bounds. A
# function of the request's duration does all three, made once per route, method and status.
_Record = Callable[[float], None]
# Held while a request's samples are added, so that OS threads never interleave their
# read-add-write of a value. The interpreter's own lock even under gevent: greenlets of one
# thread cannot interleave there anyway, as nothing in it yields.
_ADDING = _thread.RLock()
# A value where prometheus_client writes it: the first 8 bytes of the sample's 16 (its
# timestamp, the other 8, stays the 0.0 that inc() keeps writing for a counter or histogram).
_write_value = struct.Struct("d").pack_into
# Every Metrics of the process: a forked child writes files of its own (see _file_recorder), so its
# request samples are looked up again there.
_LIVE: weakref.WeakSet[Metrics] = weakref.WeakSet()


def _forget_request_samples() -> None:
    for metrics in list(_LIVE):
        metrics._request_samples.clear()


os.register_at_fork(after_in_child=_forget_request_samples)


class Metrics:
    """The metrics of one app; `metrics.counter(...)` adds service-specific ones."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        self._request_samples: dict[tuple[str, str, str], _Record] = {}
        _LIVE.add(self)
        self.requests = self.counter(
            "http_requests_total", "HTTP requests answered.", ["endpoint", "method", "status"]
        )
        self.latency = self.histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request.",
            ["endpoint", "method"],
        )

    def counter(self, name: str, documentation: str, labels: list[str]) -> Counter:
        return Counter(f"tessera_{name}", documentation, labels, registry=self.registry)

    def histogram(self, name: str, documentation: str, labels: list[str]) -> Histogram:
        return Histogram(
            f"tessera_{name}",
            documentation,
            labels,
            registry=self.registry,
            buckets=LATENCY_BUCKETS,
        )

    def init_app(self, app: Flask) -> None:
        app.extensions["tessera_metrics"] = self
        # Counted and timed by the request bookkeeping around Flask, which also notes the route
        # Flask matched as Flask starts its answer (shared/service/request_id.py).
        request_id.init_app(app).observer = self.count_request

    def count_request(self, environ: dict[str, Any], status: str, seconds: float) -> None:
        """One answer Flask made: `status` is its three digits, `seconds` the time to make it."""
        endpoint = environ.get(ENDPOINT_KEY)
        if endpoint is None:
            return  # neither Flask nor anything below it named a route: it answered nothing
        key = (endpoint, environ.get("REQUEST_METHOD", "GET"), status)
        record = self._request_samples.get(key)
        if record is None:
            record = self._request_samples[key] = self._recorder_of(*key)
        record(seconds)

    def _recorder_of(self, endpoint: str, method: str, status: str) -> _Record:
        """What one request of this key moves, found once per key: what Counter.inc() and
        Histogram.observe() end in. Those two re-check on every call what cannot change for a
        child (that it has its labels, the amount's sign, no exemplar) and look for the bucket
        one bound at a time. tests/shared/test_request_bookkeeping.py checks the samples against
        theirs, in one process and in multiprocess mode."""
        label = method.upper()  # as Flask's request.method
        requests = self.requests.labels(endpoint, label, status)._value
        latency = self.latency.labels(endpoint, label)
        bounds = latency._upper_bounds  # ascending, the last +Inf: every duration has its bucket
        if not getattr(requests, "_multiprocess", False):
            # In one process (tests) a value is a float under a lock: its inc() is already that.
            add_count, add_sum = requests.inc, latency._sum.inc
            add_to_bucket = [bucket.inc for bucket in latency._buckets]

            def record(seconds: float) -> None:
                add_count(1.0)
                add_sum(seconds)
                add_to_bucket[bisect_left(bounds, seconds)](1.0)

            return record
        return _file_recorder(requests, latency._sum, latency._buckets, bounds)


def _file_recorder(count: Any, total: Any, buckets: list[Any], bounds: list[float]) -> _Record:
    """In multiprocess mode (a gunicorn worker): a request's three values added where their
    inc() would add them, in one call.

    There a value lives in this process's file of samples, and its inc() takes the module's
    lock, asks the kernel for the process id (a system call: a fork gives the child files of
    its own) and makes two more Python calls, for each of a request's three samples. Here each
    value's total is kept as inc() keeps it (its `_value`, so that an inc() elsewhere adds to
    the same total) and written where inc() writes it, under _ADDING. A fork is noticed once:
    the child forgets every recorder (_forget_request_samples), and the first request of a key
    there calls get(), which moves the values to the child's own files as inc() would."""
    for value in (count, total, *buckets):
        value.get()  # after a fork, moves the value to this process's file
    count_file, total_file = count._file, total._file
    count_at = count_file._positions[count._key]
    total_at = total_file._positions[total._key]
    bucket_at = [(bucket, bucket._file, bucket._file._positions[bucket._key]) for bucket in buckets]

    def record(seconds: float) -> None:
        bucket, bucket_file, position = bucket_at[bisect_left(bounds, seconds)]
        with _ADDING:
            # A file's map is replaced when the file grows; positions stay where they are.
            count._value += 1.0
            _write_value(count_file._m, count_at, count._value)
            total._value += seconds
            _write_value(total_file._m, total_at, total._value)
            bucket._value += 1.0
            _write_value(bucket_file._m, position, bucket._value)

    return record


def serve_multiprocess_metrics(bind: str) -> WSGIServer:
    """Serve every process's samples (PROMETHEUS_MULTIPROC_DIR) on `bind` ("host:port") from a
    daemon thread; the gunicorn master calls it once, before it forks the workers."""
    host, _, port = bind.rpartition(":")
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    server, _serving = start_http_server(int(port), addr=host.strip("[]"), registry=registry)
    return server
