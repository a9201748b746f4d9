"""Schemathesis over every operation of a service's OpenAPI document, against a live server.

Each operation gets a share of the case budget, half of it negative (data that breaks the
document: wrong types, missing required fields) when the operation has inputs to break. Every
response must be no 5xx and conform to the document: status code, content type, headers and
body schema. Generation is derandomized (the same cases every run) and never shrinks or times
out, so a run is bounded by its case count.

A failure does not stop the run: every distinct failure (operation, check, status) is collected
with a curl command that reproduces it, and the test reports them all at the end.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

# Cases per database backend over both services; `make fuzz` raises it.
DEFAULT_CASES = 2000
# An operation with no inputs has one possible request; a couple of calls cover it.
CASES_WITHOUT_INPUTS = 2


def case_budget() -> int:
    return int(os.environ.get("FUZZ_CASES", DEFAULT_CASES))


def has_inputs(operation) -> bool:
    definition = operation.definition.raw
    return bool(operation.path_parameters or operation.query or operation.headers) or bool(
        definition.get("requestBody")
    )


def cases_per_operation(documents: list[dict], budget: int) -> int:
    """The budget spread evenly over the operations that have inputs, in every document."""
    with_inputs = sum(
        has_inputs(result.ok())
        for document in documents
        for result in schemathesis.openapi.from_dict(document).get_all_operations()
    )
    return math.ceil(budget / with_inputs)


# (case, variant) -> None: sets the credentials (or anything else) a variant stands for.
Authenticate = Callable[[Case, str], None]


@dataclass
class FuzzReport:
    cases: int = 0
    statuses: Counter = field(default_factory=Counter)
    per_operation: Counter = field(default_factory=Counter)
    failures: dict[tuple, str] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"{self.cases} cases; statuses {dict(sorted(self.statuses.items()))}"]
        lines += [f"  {label}: {count}" for label, count in sorted(self.per_operation.items())]
        return "\n".join(lines)

    def failure_text(self) -> str:
        return "\n\n".join(self.failures.values())


@dataclass
class _Target:
    base_url: str
    session: requests.Session
    variants: Callable[[Any], list[str]]
    authenticate: Authenticate
    report: FuzzReport


def fuzz_service(
    document: dict,
    base_url: str,
    *,
    per_operation: int,
    variants: Callable[[Any], list[str]],
    authenticate: Authenticate,
) -> FuzzReport:
    """Run every operation of `document` against `base_url`; `variants(operation)` names the
    credential variants to draw from (repeat one to weight it), `authenticate` applies one."""
    schema = schemathesis.openapi.from_dict(document)
    report = FuzzReport()
    with requests.Session() as session:
        target = _Target(base_url, session, variants, authenticate, report)
        for result in schema.get_all_operations():
            operation = result.ok()
            if not has_inputs(operation):
                _run(target, operation, GenerationMode.POSITIVE, CASES_WITHOUT_INPUTS)
                continue
            negative = _run(target, operation, GenerationMode.NEGATIVE, per_operation // 2)
            _run(target, operation, GenerationMode.POSITIVE, per_operation - negative)
    return report


def _run(target: _Target, operation, mode: GenerationMode, max_examples: int) -> int:
    """Up to `max_examples` cases of `operation` in `mode`; the number actually sent."""
    report = target.report
    sent = 0

    @settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(mode), variant=st.sampled_from(target.variants(operation)))
    def send(case: Case, variant: str) -> None:
        nonlocal sent
        target.authenticate(case, variant)
        sent += 1
        report.cases += 1
        report.per_operation[f"{operation.label} [{mode.value}]"] += 1
        try:
            response = case.call(base_url=target.base_url, session=target.session, timeout=30)
        except requests.RequestException as exc:
            _record(target, operation, ("transport", type(exc).__name__), case, exc)
            return
        report.statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except (Failure, FailureGroup) as exc:
            failures = exc.exceptions if isinstance(exc, FailureGroup) else (exc,)
            for failure in failures:
                key = (type(failure).__name__, failure.title, response.status_code)
                _record(target, operation, key, case, failure)

    # Unsatisfiable: nothing of this mode can be made (an input that cannot be made invalid).
    with contextlib.suppress(Unsatisfiable):
        send()
    return sent


def _record(target: _Target, operation, key: tuple, case: Case, error: Exception) -> None:
    key = (operation.label, *key)
    if key not in target.report.failures:
        curl = case.as_curl_command(base_url=target.base_url)
        target.report.failures[key] = f"{operation.label}: {error}\n  reproduce: {curl}"
