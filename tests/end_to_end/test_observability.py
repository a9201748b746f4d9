"""Metrics, structured logs and request ids, with both services under gunicorn as deployed."""

from __future__ import annotations

import json
import time

import pytest
import requests

import resource_server
from resource_server.settings import ResourceSettings
from tests.processes import GunicornService, settings_env
from tests.support import NOTES_API

pytestmark = pytest.mark.slow


@pytest.fixture
def stack(gunicorn_auth, make_database_url):
    auth = gunicorn_auth(workers=2, log_level="INFO", log_format="json")
    settings = ResourceSettings(
        resource_database_url=make_database_url("notes"),
        auth_server_url=auth.url,
        resource_client_id=NOTES_API[0],
        resource_client_secret=NOTES_API[1],
        log_level="INFO",
        log_format="json",
    )
    resource_server.create_app(settings, create_tables=True)
    notes = GunicornService("resource_server", settings_env(settings), workers=2).start()
    yield auth, notes
    notes.stop()


def _samples(url: str) -> dict[str, float]:
    response = requests.get(url, timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def test_metrics_count_across_workers_on_the_metrics_listener_only(stack):
    auth, notes = stack
    # The public ports have no /metrics: the gunicorn master serves it on METRICS_BIND.
    for url in (auth.url, notes.url):
        assert requests.get(f"{url}/metrics", timeout=5).status_code == 404
    tokens = [auth.login()["access_token"] for _ in range(4)]
    for token in tokens:
        for _ in range(3):
            assert (
                requests.get(
                    f"{notes.url}/api/me", headers={"Authorization": f"Bearer {token}"}, timeout=5
                ).status_code
                == 200
            )
    requests.get(f"{notes.url}/api/me", headers={"Authorization": "Bearer nope"}, timeout=5)
    auth.refresh(auth.login()["refresh_token"])
    auth_samples = _samples(auth.server.metrics_url)
    assert auth_samples['tessera_tokens_issued_total{grant_type="password"}'] == 5
    assert auth_samples['tessera_tokens_issued_total{grant_type="refresh_token"}'] == 1
    assert auth_samples['tessera_introspections_total{result="active"}'] == 12
    assert auth_samples['tessera_introspections_total{result="inactive"}'] == 1
    assert (
        auth_samples[
            'tessera_http_requests_total{endpoint="/oauth/introspect",method="POST",status="200"}'
        ]
        == 13
    )
    notes_samples = _samples(notes.metrics_url)
    assert (
        notes_samples['tessera_http_requests_total{endpoint="/api/me",method="GET",status="200"}']
        == 12
    )
    assert (
        notes_samples['tessera_introspection_call_duration_seconds_count{outcome="active"}'] == 12
    )


def test_request_id_follows_a_request_from_the_resource_server_to_the_authorization_server(stack):
    auth, notes = stack
    token = auth.login()["access_token"]
    response = requests.get(
        f"{notes.url}/api/me",
        timeout=5,
        headers={"Authorization": f"Bearer {token}", "X-Request-ID": "trace-me-42"},
    )
    assert response.headers["X-Request-ID"] == "trace-me-42"
    # gunicorn writes the access line after the response went out: give it a moment
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        auth_log = auth.server.logs()
        if any(
            "/oauth/introspect" in line and "trace-me-42" in line for line in auth_log.splitlines()
        ):
            break
        time.sleep(0.05)
    else:
        pytest.fail("no introspection line with the request id in the AS log:\n" + auth_log[-2000:])


def wait_for_access_lines(read_logs, request_ids: list[str], limit: float = 5.0) -> str:
    """The logs once every request id has its access line: gunicorn writes that line after
    the response went out, so reading the logs at once could miss the last requests."""
    deadline = time.monotonic() + limit
    while True:
        logs = read_logs()
        missing = [rid for rid in request_ids if f"rid={rid}" not in logs]
        if not missing:
            return logs
        if time.monotonic() > deadline:
            pytest.fail(f"no access line for {missing}:\n{logs[-2000:]}")
        time.sleep(0.05)  # polling with a deadline


def test_logs_are_json_and_never_contain_tokens_or_secrets(stack):
    auth, notes = stack
    request_ids = []

    def tagged(step: str) -> None:
        request_ids.append(f"secrets-test-{step}")
        auth.http.headers["X-Request-ID"] = request_ids[-1]

    tagged("login")
    tokens = auth.login()
    tagged("refresh")
    refreshed = auth.refresh(tokens["refresh_token"]).json()
    bearer = {
        "Authorization": f"Bearer {refreshed['access_token']}",
        "X-Request-ID": "secrets-test-rs",
    }
    requests.get(f"{notes.url}/api/me?access_token=leak", headers=bearer, timeout=5)
    tagged("reuse")
    auth.refresh(tokens["refresh_token"])  # reuse: the family is revoked, and audited
    tagged("revoke")
    auth.revoke(refreshed["access_token"])
    tagged("wrong-password")
    auth.token(grant_type="password", username="alice", password="wrong-password-x")
    logs = wait_for_access_lines(auth.server.logs, request_ids)
    logs += wait_for_access_lines(notes.logs, ["secrets-test-rs"])
    for secret in (
        tokens["access_token"],
        tokens["refresh_token"],
        refreshed["access_token"],
        refreshed["refresh_token"],
        "wonderland",
        "wrong-password-x",
        "demo-app-secret",
        NOTES_API[1],
        "leak",
    ):
        assert secret not in logs
    app_lines = [line for line in logs.splitlines() if line.startswith("{")]
    events = [json.loads(line) for line in app_lines]
    assert any(e.get("audit", {}).get("event") == "refresh_token_reuse_detected" for e in events)
    assert any(e.get("audit", {}).get("event") == "login_failed" for e in events)
