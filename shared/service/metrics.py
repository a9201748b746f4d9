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
# What one request moves (Metrics._samples_of): its count, the sum of durations, and the bucket
# whose upper bound is the first not below its duration, found by bisection of the bounds.
_RequestSamples = tuple[
    Callable[[float], None], Callable[[float], None], list[float], list[Callable[[float], None]]
]
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The metrics of one app; `metrics.counter(...)` adds service-specific ones."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        self._request_samples: dict[tuple[str, str, str], _RequestSamples] = {}
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
        samples = self._request_samples.get(key)
        if samples is None:
            samples = self._request_samples[key] = self._samples_of(*key)
        count, add_duration, bounds, buckets = samples
        count(1.0)
        add_duration(seconds)
        buckets[bisect_left(bounds, seconds)](1.0)

    def _samples_of(self, endpoint: str, method: str, status: str) -> _RequestSamples:
        """The values one request of this key moves: what Counter.inc() and Histogram.observe()
        end in, found once per key. Those two re-check on every call what cannot change for a
        child (that it has its labels, the amount's sign, no exemplar) and look for the bucket
        one bound at a time; with three samples per request, that was a third of their cost.
        tests/shared/test_request_bookkeeping.py checks the samples against theirs."""
        label = method.upper()  # as Flask's request.method
        requests = self.requests.labels(endpoint, label, status)
        latency = self.latency.labels(endpoint, label)
        return (
            requests._value.inc,
            latency._sum.inc,
            latency._upper_bounds,  # ascending, the last +Inf: every duration has its bucket
            [bucket.inc for bucket in latency._buckets],
        )


def serve_multiprocess_metrics(bind: str) -> WSGIServer:
    """Serve every process's samples (PROMETHEUS_MULTIPROC_DIR) on `bind` ("host:port") from a
    daemon thread; the gunicorn master calls it once, before it forks the workers."""
    host, _, port = bind.rpartition(":")
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    server, _thread = start_http_server(int(port), addr=host.strip("[]"), registry=registry)
    return server
