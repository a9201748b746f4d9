"""Both services, fuzzed from their OpenAPI documents under gunicorn: no 5xx, and no response
the document does not describe. FUZZ_CASES (default 2,000) cases per database backend over
both services; `make fuzz` runs more."""

from __future__ import annotations

import base64

import pytest
import schemathesis

from shared.protocol.basic_auth import basic_credentials_header
from shared.service.openapi import load_document
from tests.fuzz.api_fuzzer import case_budget, cases_per_operation, fuzz_service, has_inputs
from tests.support import DEMO_APP, NOTES_API, SERVICE_APP, SPA_APP, SPA_REDIRECT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(max(600, case_budget()))]


def _per_operation() -> int:
    documents = [load_document("auth_server"), load_document("resource_server")]
    return cases_per_operation(documents, case_budget())


def _expected_cases(document: dict, per_operation: int) -> int:
    operations = [r.ok() for r in schemathesis.openapi.from_dict(document).get_all_operations()]
    return per_operation * sum(has_inputs(op) for op in operations)


def _set_header(case, name: str, value: str | None) -> None:
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != name.lower()}
    if value is not None:
        headers[name] = value
    case.headers = headers


def _set_form(case, **values) -> None:
    if isinstance(case.body, dict):
        case.body = {**case.body, **values}


def _report(report, expected: int, label: str) -> None:
    print(f"\n{label}: {report.summary()}")
    assert not report.failures, f"{len(report.failures)} failures:\n\n{report.failure_text()}"
    assert report.cases >= expected, f"only {report.cases} of {expected} cases were generated"


def test_notes_api_answers_every_generated_request_as_documented(fuzz_stack):
    document = load_document("resource_server")
    per_operation = _per_operation()
    bearer = {"alice": fuzz_stack.alice_token, "bob": fuzz_stack.bob_token}

    def variants(operation) -> list[str]:
        # Mostly a valid token, so the requests get past the guard into the API.
        return ["alice", "alice", "alice", "bob", "generated", "none"]

    def authenticate(case, variant: str) -> None:
        if variant in bearer:
            _set_header(case, "Authorization", f"Bearer {bearer[variant]}")
        elif variant == "none":
            _set_header(case, "Authorization", None)

    report = fuzz_service(
        document,
        fuzz_stack.resource_url,
        per_operation=per_operation,
        variants=variants,
        authenticate=authenticate,
    )
    _report(report, _expected_cases(document, per_operation), f"notes API [{fuzz_stack.backend}]")


def test_authorization_server_answers_every_generated_request_as_documented(fuzz_stack):
    document = load_document("auth_server")
    per_operation = _per_operation()
    basic = {
        "demo-app": basic_credentials_header(*DEMO_APP),
        "service-app": basic_credentials_header(*SERVICE_APP),
        "notes-api": basic_credentials_header(*NOTES_API),
        "wrong-secret": basic_credentials_header(DEMO_APP[0], "not-the-secret"),
        "garbage": "Basic " + base64.b64encode(b"\xff\xfe:\x00").decode(),
    }

    def variants(operation) -> list[str]:
        path = operation.path
        if path == "/oauth/authorize":
            return ["spa", "spa", "generated"]
        if path == "/oauth/token":
            return ["demo-app", "demo-app", "service-app", "public-spa", "wrong-secret", "none"]
        if path == "/oauth/introspect":
            return ["notes-api", "notes-api", "notes-api+token", "demo-app", "garbage", "none"]
        if path == "/oauth/revoke":
            return ["demo-app", "demo-app+token", "public-spa", "garbage", "none"]
        if path == "/account/password":
            return ["demo-app", "demo-app", "wrong-secret", "none"]
        return ["none"]

    def authenticate(case, variant: str) -> None:
        client, _, extra = variant.partition("+")
        if client in basic:
            _set_header(case, "Authorization", basic[client])
        elif client == "none":
            _set_header(case, "Authorization", None)
        elif client == "public-spa":
            _set_header(case, "Authorization", None)
            _set_form(case, client_id=SPA_APP)
        elif client == "spa" and isinstance(case.query, dict):
            # A known client and redirect_uri, so requests reach the checks behind them.
            case.query = {**case.query, "client_id": SPA_APP, "redirect_uri": SPA_REDIRECT}
        if extra == "token":
            _set_form(case, token=fuzz_stack.spare_access_token)

    report = fuzz_service(
        document,
        fuzz_stack.auth_url,
        per_operation=per_operation,
        variants=variants,
        authenticate=authenticate,
    )
    _report(
        report,
        _expected_cases(document, per_operation),
        f"authorization server [{fuzz_stack.backend}]",
    )
