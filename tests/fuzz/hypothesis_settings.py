"""Bounded Hypothesis settings for the fuzzers: FUZZ_EXAMPLES examples (default 200; `make
fuzz` runs more), derandomized so every run tries the same inputs, and no deadline (a busy
machine must not turn slowness into a failure)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

DEFAULT_EXAMPLES = 200


def examples() -> int:
    return int(os.environ.get("FUZZ_EXAMPLES", DEFAULT_EXAMPLES))


def bounded(max_examples: int | None = None) -> settings:
    return settings(
        max_examples=max_examples or examples(),
        deadline=None,
        derandomize=True,
        database=None,
        # The live servers are function-scoped fixtures shared by every example on purpose.
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
