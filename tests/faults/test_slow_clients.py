"""Clients that trickle their requests cannot take a service down (security finding 11), and
/metrics is served on a listener of its own, never on the service's public port.

Each service runs the way a documented topology runs it: `make run` (scripts/run-demo itself,
SQLite) and the compose services' gunicorn with their compose environment, reached directly as
tests/end_to_end/test_stack.py does (in compose nginx stands in front as well). 40 clients
trickle their headers and 40 more their bodies, one byte every 0.5 s; a normal /healthz must
still answer within 2 s. Under gthread (2 workers x 4 threads) it waited until the trickling
clients gave up: each held a thread while it read their request.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.multiprocess import MultiProcessCollector

import resource_server
from auth_server import create_app
from shared.service.settings import PROJECT_ROOT
from tests.compose import load_compose, service_environment
from tests.faults.slow_clients import trickling
from tests.processes import GunicornService, free_port
from tests.support import auth_settings, resource_settings, seed

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SLOW_CLIENTS = 40
TRICKLE_INTERVAL = 0.5
LIVENESS_BOUND = 2.0  # seconds: finding 11's bound for /healthz under the attack


def _healthz_seconds(port: int) -> float:
    started = time.monotonic()
    try:
        response = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=LIVENESS_BOUND)
    except requests.Timeout:
        pytest.fail(f"/healthz on :{port} did not answer within {LIVENESS_BOUND} s", pytrace=False)
    assert response.status_code == 200
    return time.monotonic() - started


def _answers_healthz_while_clients_trickle(port: int, body_path: str) -> None:
    with (
        trickling(port, SLOW_CLIENTS, TRICKLE_INTERVAL) as headers,
        trickling(port, SLOW_CLIENTS, TRICKLE_INTERVAL, body_path=body_path) as bodies,
    ):
        # Three bytes each: every client is connected and 1 s into its request, so a server
        # that reads a request on a thread of its own has given each of them one by now.
        headers.wait_until_each_sent(3, timeout=30)
        bodies.wait_until_each_sent(3, timeout=30)
        seconds = [_healthz_seconds(port) for _ in range(3)]
        # The attack was still on while /healthz answered: no client had been cut off.
        assert headers.still_connected and bodies.still_connected
    print(f"\n:{port} /healthz under {2 * SLOW_CLIENTS} trickling clients: {seconds}")


def _samples(url: str) -> dict[str, float]:
    response = requests.get(url, timeout=5)
    assert response.status_code == 200, response.text
    samples = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


HEALTHZ_OK = 'tessera_http_requests_total{endpoint="/healthz",method="GET",status="200"}'


def _workers_that_answered_healthz(metrics_dir: Path) -> int:
    """prometheus-client's multiprocess mode keeps one file per process (counter_<pid>.db):
    the number of processes whose own file counts a /healthz answer."""
    answered = 0
    for path in metrics_dir.glob("counter_*.db"):
        for metric in MultiProcessCollector.merge([str(path)]):
            for sample in metric.samples:
                if sample.name == "tessera_http_requests_total" and sample.value > 0:
                    answered += sample.labels == {
                        "endpoint": "/healthz",
                        "method": "GET",
                        "status": "200",
                    }
    return answered


def _metrics_only_on_their_listener(port: int, metrics_url: str, metrics_dir: Path) -> None:
    """/metrics is 404 on the public port; the listener counts what every worker answered."""
    assert requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 404
    before = _samples(metrics_url).get(HEALTHZ_OK, 0)
    # New connections until both workers have answered some.
    answered, deadline = 0, time.monotonic() + 30
    while _workers_that_answered_healthz(metrics_dir) < 2 and time.monotonic() < deadline:
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        answered += 1
    assert _workers_that_answered_healthz(metrics_dir) >= 2, "one worker answered everything"
    for _ in range(10):
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        answered += 1
    assert _samples(metrics_url)[HEALTHZ_OK] - before == answered


# -- make run --------------------------------------------------------------------------------


@pytest.fixture
def make_run(tmp_path):
    """scripts/run-demo, as `make run` runs it, on free ports and with its files in tmp_path."""
    ports = {
        name: free_port()
        for name in (
            "AUTH_PORT",
            "RESOURCE_PORT",
            "AUTH_METRICS_PORT",
            "RESOURCE_METRICS_PORT",
            "DEMO_WEB_PORT",
        )
    }
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(
            ("AUTH_", "RESOURCE_", "GUNICORN_", "METRICS_", "PROMETHEUS_", "DEMO_WEB_")
        )
    }
    env.update({name: str(port) for name, port in ports.items()})
    env.update(
        # this virtualenv, where `make run` uses .venv of the checkout
        TESSERA_VENV=str(Path(sys.executable).parent.parent),
        TESSERA_METRICS_DIR=str(tmp_path / "metrics"),
        # the same SQLite files and generated secrets as make run, in tmp_path, not instance/
        AUTH_DATABASE_URL=f"sqlite:///{tmp_path / 'auth.sqlite3'}",
        RESOURCE_DATABASE_URL=f"sqlite:///{tmp_path / 'resource.sqlite3'}",
        AUTH_KEY_ENCRYPTION_KEY_FILE=str(tmp_path / "key-encryption.key"),
        AUTH_SESSION_SECRET_FILE=str(tmp_path / "session-secret.key"),
        DEMO_WEB_SESSION_DB=str(tmp_path / "demo-web-sessions.sqlite3"),
    )
    log_path = tmp_path / "run-demo.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["bash", str(PROJECT_ROOT / "scripts" / "run-demo")],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the stop takes both gunicorns
        )
    try:
        deadline = time.monotonic() + 120
        while "Tessera is running" not in log_path.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("make run did not start:\n" + log_path.read_text(errors="replace"))
            time.sleep(0.2)
        yield ports, tmp_path / "metrics", log_path
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # Ctrl-C's way: the script stops both
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def test_make_run_answers_healthz_within_2_s_while_80_clients_trickle_requests(make_run):
    ports, _, log_path = make_run
    _answers_healthz_while_clients_trickle(ports["AUTH_PORT"], "/oauth/token")
    _answers_healthz_while_clients_trickle(ports["RESOURCE_PORT"], "/api/notes")
    assert not re.search(r"Traceback|\" 500 ", log_path.read_text(errors="replace"))


def test_make_run_serves_metrics_of_every_worker_only_on_the_metrics_port(make_run):
    ports, metrics_dir, log_path = make_run
    for service, port in (("auth", ports["AUTH_PORT"]), ("resource", ports["RESOURCE_PORT"])):
        metrics_port = ports[f"{service.upper()}_METRICS_PORT"]
        _metrics_only_on_their_listener(
            port, f"http://127.0.0.1:{metrics_port}/metrics", metrics_dir / service
        )
    # what the script tells the developer
    log = log_path.read_text(errors="replace")
    assert f"http://127.0.0.1:{ports['AUTH_METRICS_PORT']}/metrics" in log


# -- compose ---------------------------------------------------------------------------------


@pytest.fixture
def compose_services(make_database_url, gunicorn_services):
    """The compose auth-server and one resource-server replica: gunicorn with the compose
    environment, their databases pointed at this test's (schema created here, not migrated:
    tests/end_to_end/test_stack.py runs the compose migrate command)."""
    compose = load_compose()
    auth_port = free_port()
    auth_url = f"http://127.0.0.1:{auth_port}"
    auth_database, notes_database = make_database_url("auth"), make_database_url("notes")
    seeding = create_app(auth_settings(auth_database, auth_url), create_tables=True)
    seed(seeding)
    with seeding.app_context():
        seeding.extensions["sqlalchemy"].engine.dispose()
    auth_env = {
        **service_environment(compose, "auth-server"),
        "AUTH_DATABASE_URL": auth_database,
        # compose's Redis host does not exist here: the counters live in the AS database
        "RATELIMIT_STORAGE_URI": "database",
    }
    auth = GunicornService("auth_server", auth_env, port=auth_port)
    gunicorn_services.append(auth)
    auth.start()

    notes_app = resource_server.create_app(
        resource_settings(notes_database, auth), create_tables=True
    )
    with notes_app.app_context():
        notes_app.extensions["sqlalchemy"].engine.dispose()
    notes_env = {
        **service_environment(compose, "resource-server"),
        "RESOURCE_DATABASE_URL": notes_database,
        "AUTH_SERVER_URL": auth_url,
    }
    notes = GunicornService("resource_server", notes_env)
    gunicorn_services.append(notes)
    notes.start()
    return auth, notes


def test_compose_services_answer_healthz_within_2_s_while_80_clients_trickle_requests(
    compose_services,
):
    auth, notes = compose_services
    _answers_healthz_while_clients_trickle(auth.port, "/oauth/token")
    _answers_healthz_while_clients_trickle(notes.port, "/api/notes")


def test_compose_services_serve_metrics_of_every_worker_only_on_the_metrics_listener(
    compose_services,
):
    for service in compose_services:
        _metrics_only_on_their_listener(
            service.port, service.metrics_url, Path(service.env["PROMETHEUS_MULTIPROC_DIR"])
        )
