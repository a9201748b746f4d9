"""`python -m auth_server` / `python -m resource_server`: `serve` runs the service under gunicorn
with gunicorn.conf.py, anything else is the operator CLI of `flask --app <service>`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import requests

import resource_server
from auth_server import create_app
from resource_server.settings import ResourceSettings
from tests.processes import GunicornService, free_port, settings_env
from tests.support import ALICE, NOTES_API, auth_settings, seed

pytestmark = pytest.mark.live


def python_m(module: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AUTH_", "RESOURCE_"))}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_python_m_runs_the_operator_cli(make_database_url):
    settings = auth_settings(make_database_url("auth"), "http://127.0.0.1:8000")
    seed(create_app(settings, create_tables=True))
    listed = python_m("auth_server", "users", "list", "--json", env=settings_env(settings))
    assert listed.returncode == 0, listed.stderr
    assert ALICE[0] in {user["username"] for user in json.loads(listed.stdout)}


def test_python_m_without_a_command_prints_its_usage():
    result = python_m("resource_server", env={})
    assert result.returncode == 2
    assert "python -m resource_server serve" in result.stderr


def test_python_m_serve_runs_both_services_under_gunicorn(make_database_url):
    port = free_port()
    settings = auth_settings(make_database_url("auth"), f"http://127.0.0.1:{port}")
    seed(create_app(settings, create_tables=True))
    auth = GunicornService(
        "auth_server", settings_env(settings), workers=1, port=port, python_m=True
    ).start()
    notes_settings = ResourceSettings(
        resource_database_url=make_database_url("notes"),
        auth_server_url=auth.url,
        resource_client_id=NOTES_API[0],
        resource_client_secret=NOTES_API[1],
    )
    resource_server.create_app(notes_settings, create_tables=True)
    notes = GunicornService(
        "resource_server", settings_env(notes_settings), workers=1, python_m=True
    ).start()
    try:
        assert requests.get(f"{auth.url}/readyz", timeout=5).status_code == 200
        assert requests.get(f"{notes.url}/api/me", timeout=5).status_code == 401
        assert "gunicorn" in auth.logs().lower()
    finally:
        notes.stop()
        auth.stop()
