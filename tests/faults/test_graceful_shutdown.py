"""SIGTERM to the authorization server's gunicorn master (a deploy, a scale-down) while
requests are in flight: those requests complete with 200, nothing answers 500, and once the
workers have drained the port refuses new connections.

"In flight" is made deterministic: each of those requests has sent its headers and all but the
last byte of its body, so a worker thread is inside the view, reading the form, when the
signal arrives; the last byte is sent after it.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import threading
import time
from collections import Counter
from urllib.parse import urlencode

import pytest
import requests
from sqlalchemy import select

from auth_server import create_app
from auth_server.db import db
from auth_server.models import AuditEvent
from auth_server.protocol.introspection import look_up_access_token
from tests.support import NOTES_API, SERVICE_APP

pytestmark = pytest.mark.slow

GRACEFUL_TIMEOUT = 10


def _basic(credentials: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(":".join(credentials).encode()).decode()


class SlowRequest:
    """An HTTP/1.1 POST sent all but its last byte, finished on demand."""

    def __init__(self, port: int, path: str, form: dict, credentials: tuple[str, str]) -> None:
        body = urlencode(form).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: {_basic(credentials)}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        self.path = path
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=GRACEFUL_TIMEOUT + 5)
        self.sock.sendall(head + body[:-1])
        self._last = body[-1:]

    def finish(self) -> tuple[int, dict]:
        self.sock.sendall(self._last)
        raw = b""
        while chunk := self.sock.recv(65536):
            raw += chunk
        self.sock.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        return status, json.loads(body)


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def _probe(url: str, result: dict) -> None:
    started = time.monotonic()
    try:
        result["outcome"] = requests.get(f"{url}/healthz", timeout=GRACEFUL_TIMEOUT + 5).status_code
    except requests.RequestException as exc:
        result["outcome"] = type(exc).__name__
    result["seconds"] = time.monotonic() - started


def _load(url: str, token: str, stop: threading.Event, outcomes: list) -> None:
    with requests.Session() as http:
        while not stop.is_set():
            sent = time.monotonic()
            try:
                response = http.post(
                    f"{url}/oauth/introspect", data={"token": token}, auth=NOTES_API, timeout=15
                )
                outcomes.append((sent, response.status_code))
            except requests.RequestException as exc:
                outcomes.append((sent, type(exc).__name__))
                time.sleep(0.05)  # refused: the server is going away; do not spin


def test_sigterm_finishes_requests_in_flight_then_refuses_connections(
    make_database_url, start_auth
):
    auth = start_auth(
        make_database_url("auth"), env={"GUNICORN_GRACEFUL_TIMEOUT": str(GRACEFUL_TIMEOUT)}
    )
    service = auth.server
    token = auth.login()["access_token"]

    stop, outcomes = threading.Event(), []
    loaders = [
        threading.Thread(target=_load, args=(auth.url, token, stop, outcomes), daemon=True)
        for _ in range(3)
    ]
    for loader in loaders:
        loader.start()
    deadline = time.monotonic() + 10
    while len(outcomes) < len(loaders) and time.monotonic() < deadline:
        time.sleep(0.01)  # polling: the load is flowing once each loader got an answer
    assert len(outcomes) >= len(loaders), "the load never got an answer"
    in_flight = [
        SlowRequest(service.port, "/oauth/token", {"grant_type": "client_credentials"}, SERVICE_APP)
        for _ in range(2)
    ] + [
        SlowRequest(service.port, "/oauth/introspect", {"token": token}, NOTES_API)
        for _ in range(2)
    ]
    time.sleep(0.5)  # the workers have taken them: each thread is inside a view, reading

    terminated_at = time.monotonic()
    os.kill(service.process.pid, signal.SIGTERM)  # the master only, as an orchestrator does
    time.sleep(0.3)
    # A new connection while the workers drain: whatever it gets, never an error status.
    probe: dict = {}
    prober = threading.Thread(target=_probe, args=(auth.url, probe), daemon=True)
    prober.start()
    time.sleep(0.2)
    answers = [request.finish() for request in in_flight]
    finished_at = time.monotonic()
    prober.join(timeout=GRACEFUL_TIMEOUT + 10)
    drain_probe = probe["outcome"]

    refused_at = None
    while time.monotonic() - terminated_at < GRACEFUL_TIMEOUT + 5:
        if _refused(service.port):
            refused_at = time.monotonic()
            break
        time.sleep(0.05)
    exit_code = service.process.wait(timeout=GRACEFUL_TIMEOUT + 5)
    exited_at = time.monotonic()
    stop.set()
    for loader in loaders:
        loader.join(timeout=20)

    statuses = Counter(status for _, status in outcomes)
    before = Counter(status for sent, status in outcomes if sent < terminated_at)
    print(
        f"\nSIGTERM with {len(in_flight)} requests in flight: {[s for s, _ in answers]}; "
        f"load {dict(statuses)} (before SIGTERM {dict(before)}); "
        f"new request during drain -> {drain_probe} after {probe['seconds']:.2f} s; "
        f"in-flight done "
        f"{finished_at - terminated_at:.2f} s, connections refused "
        f"{(refused_at or float('nan')) - terminated_at:.2f} s, master exited "
        f"{exited_at - terminated_at:.2f} s after SIGTERM (code {exit_code})"
    )

    assert [status for status, _ in answers] == [200] * len(in_flight), answers
    issued = [body["access_token"] for (_, body), r in zip(answers, in_flight) if "token" in r.path]
    assert all(
        body.get("active") is True
        for (_, body), r in zip(answers, in_flight)
        if "introspect" in r.path
    )
    assert refused_at is not None, "the port still accepts connections after the drain"
    assert _refused(service.port)
    assert exit_code == 0
    assert drain_probe == 200 or isinstance(drain_probe, str), drain_probe
    assert all(s == 200 or isinstance(s, str) for s in statuses), dict(statuses)
    # Load requests sent before the signal were in flight or done by then: all answered 200.
    assert set(before) == {200}, dict(before)
    # The tokens handed out during the shutdown are known to a fresh process (self-contained:
    # by their signature), and their audit rows, written after the answers, were written
    # before the workers exited.
    app = create_app(auth.settings)
    components = app.extensions["tessera"]
    with app.app_context():
        for access_token in issued:
            jti = json.loads(base64.urlsafe_b64decode(access_token.split(".")[1] + "=="))["jti"]
            record = look_up_access_token(
                components.reader, access_token, None, components.self_contained_tokens
            )
            assert record is not None and record.jti == jti and not record.revoked
            issued_events = db.session.scalars(
                select(AuditEvent.detail).where(AuditEvent.event == "token_issued")
            )
            assert any(json.loads(detail).get("jti") == jti for detail in issued_events), jti
        db.engine.dispose()
