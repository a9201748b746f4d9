"""What the resource server counts beyond requests: its calls to the introspection endpoint."""

from __future__ import annotations

from shared.guard.introspection import ACTIVE, INACTIVE
from shared.service.metrics import Metrics


class ResourceMetrics(Metrics):
    def __init__(self) -> None:
        super().__init__("resource_server")
        self.introspection_calls = self.histogram(
            "introspection_call_duration_seconds",
            "Time the authorization server took to answer introspection, by outcome.",
            ["outcome"],
        )
        self.introspection_failures = self.counter(
            "introspection_call_failures_total",
            "Introspection calls that got no usable answer (the request got 503), by outcome.",
            ["outcome"],
        )
        self.introspection_cache = self.counter(
            "introspection_cache_total",
            "With INTROSPECTION_CACHE_TTL: token checks answered from the cache (hit), "
            "introspected and cached (miss), or introspected because the revocation channel "
            "was not live (bypass).",
            ["outcome"],
        )
        self.revocation_events = self.counter(
            "revocation_events_received_total",
            "Revocation events received, by outcome (applied, unreadable).",
            ["outcome"],
        )

    def on_cache_lookup(self, outcome: str) -> None:
        self.introspection_cache.labels(outcome).inc()

    def on_revocation_event(self, outcome: str) -> None:
        self.revocation_events.labels(outcome).inc()

    def on_introspection(self, duration: float, outcome: str) -> None:
        self.introspection_calls.labels(outcome).observe(duration)
        if outcome not in (ACTIVE, INACTIVE):
            self.introspection_failures.labels(outcome).inc()
