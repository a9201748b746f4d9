"""Prometheus metrics for a Flask service (`GET /metrics`).

Each app gets its own registry, so tests can build many apps in one process. Under gunicorn,
PROMETHEUS_MULTIPROC_DIR is set (gunicorn.conf.py does it) and prometheus-client's
multiprocess mode aggregates what every worker recorded; /metrics then reads that directory.

Requests are labelled by route template (`/api/notes/<int:note_id>`), never by raw path, so
an attacker cannot blow up the number of time series.
"""

from __future__ import annotations

import os
import time

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The metrics of one app; `metrics.counter(...)` adds service-specific ones."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
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
        app.before_request(_start_timer)
        app.after_request(self._observe)
        app.add_url_rule("/metrics", "metrics", self.render, methods=["GET"])

    def _observe(self, response: Response) -> Response:
        started = g.get("_metrics_started")
        rule = request.url_rule
        endpoint = rule.rule if rule is not None else "unmatched"
        if endpoint != "/metrics" and started is not None:
            self.requests.labels(endpoint, request.method, str(response.status_code)).inc()
            self.latency.labels(endpoint, request.method).observe(time.perf_counter() - started)
        return response

    def render(self) -> Response:
        registry = self.registry
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def _start_timer() -> None:
    g._metrics_started = time.perf_counter()
