"""Runs what docker-compose.yml runs, as local processes (no Docker engine needed).

Two fresh PostgreSQL databases on the local server stand for the compose `postgres` service,
the compose `migrate` command runs verbatim with the compose environment, then one
authorization server (gunicorn, 2 workers) and two resource-server replicas start with their
compose environments. Only host names, ports and database names are rewritten; everything
else (issuer, key-encryption key, client credentials, demo seeding) is the compose file's.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.compose import load_compose, service_command, service_environment
from tests.processes import GunicornService, free_port

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(240),
    pytest.mark.skipif(
        not TEST_DATABASE_URL,
        reason="needs a PostgreSQL server to create databases on: set TEST_DATABASE_URL "
        "(CI does: postgresql+psycopg://postgres@127.0.0.1:5432/test)",
    ),
]

DEMO_APP = ("demo-app", "demo-app-secret")
ALICE = {"username": "alice", "password": "wonderland"}


def _redis_reachable(host: str = "127.0.0.1", port: int = 6379) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def databases():
    """{"tessera_auth": name, "tessera_notes": name}: two new databases, dropped afterwards."""
    admin = create_engine(TEST_DATABASE_URL, isolation_level="AUTOCOMMIT", pool_size=1)
    suffix = uuid.uuid4().hex[:10]
    names = {"tessera_auth": f"tessera_auth_{suffix}", "tessera_notes": f"tessera_notes_{suffix}"}
    with admin.connect() as conn:
        for name in names.values():
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield names
    with admin.connect() as conn:
        for name in names.values():
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _local(env: dict[str, str], databases: dict[str, str], auth_url: str) -> dict[str, str]:
    """The compose environment with compose's host names pointed at this machine."""
    server = make_url(TEST_DATABASE_URL)
    local = dict(env)
    for variable in ("AUTH_DATABASE_URL", "RESOURCE_DATABASE_URL"):
        if variable in local:
            url = make_url(local[variable])
            assert url.host == "postgres", f"{variable} in compose should name the postgres service"
            local[variable] = url.set(
                host=server.host,
                port=server.port,
                username=server.username,
                password=server.password,
                database=databases[url.database],
            ).render_as_string(hide_password=False)
    if "AUTH_SERVER_URL" in local:
        assert local["AUTH_SERVER_URL"] == "http://auth-server:8000"
        local["AUTH_SERVER_URL"] = auth_url
    if "RATELIMIT_STORAGE_URI" in local:
        uri = local["RATELIMIT_STORAGE_URI"]
        assert uri.startswith("redis://redis:")
        # Without a local Redis the counters go to the database (the default store).
        local["RATELIMIT_STORAGE_URI"] = (
            uri.replace("redis://redis:", "redis://127.0.0.1:")
            if _redis_reachable()
            else "database"
        )
    return local


def test_compose_stack_with_two_resource_server_replicas(databases, tmp_path):
    compose = load_compose()
    auth_port = free_port()
    auth_url = f"http://127.0.0.1:{auth_port}"

    # -- migrate: the compose command, verbatim, with the compose environment --------------
    migrate_env = _local(service_environment(compose, "migrate"), databases, auth_url)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("AUTH_", "RESOURCE_"))}
    # `flask` is this virtualenv's, as it is the image's /opt/venv/bin/flask.
    environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environ.get('PATH', '')}"
    migrated = subprocess.run(
        service_command(compose, "migrate"),
        env={**environ, **migrate_env},
        cwd=tmp_path,  # like the image: nothing is read from the checkout's working directory
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert "Running upgrade  -> 0001" in migrated.stderr
    assert "demo data" in migrated.stdout  # TESSERA_DEMO=1 in deploy/compose.env

    # -- the services, each with its compose environment -----------------------------------
    services: list[GunicornService] = []
    try:
        auth_env = _local(service_environment(compose, "auth-server"), databases, auth_url)
        auth = GunicornService("auth_server", auth_env, workers=2, port=auth_port).start()
        services.append(auth)
        resource_env = _local(service_environment(compose, "resource-server"), databases, auth_url)
        replicas = [
            GunicornService("resource_server", resource_env, workers=2).start() for _ in range(2)
        ]
        services.extend(replicas)
        for service in services:  # what the compose healthchecks ask
            assert requests.get(f"{service.url}/readyz", timeout=5).status_code == 200

        http = requests.Session()
        issuer = auth_env["AUTH_ISSUER"]
        metadata = http.get(f"{auth.url}/.well-known/oauth-authorization-server", timeout=5)
        assert metadata.json()["issuer"] == issuer == resource_env["RESOURCE_EXPECTED_ISSUER"]

        # Login at the authorization server (the demo seeded by migrate).
        login = http.post(
            f"{auth.url}/oauth/token",
            data={"grant_type": "password", **ALICE},
            auth=DEMO_APP,
            timeout=10,
        )
        assert login.status_code == 200, login.text
        token = login.json()["access_token"]
        bearer = {"Authorization": f"Bearer {token}"}
        one, two = (replica.url for replica in replicas)

        # Replica 1 accepts it (introspection over AUTH_SERVER_URL, public issuer in `iss`).
        me = http.get(f"{one}/api/me", headers=bearer, timeout=10)
        assert me.status_code == 200, me.text
        assert me.json()["username"] == "alice"

        # Both replicas share the notes database.
        created = http.post(f"{one}/api/notes", json={"body": "from replica 1"}, headers=bearer)
        assert created.status_code == 201, created.text
        listed = http.get(f"{two}/api/notes", headers=bearer, timeout=10)
        assert listed.status_code == 200
        assert [n["body"] for n in listed.json()["notes"]] == ["from replica 1"]

        # Revoked at the authorization server: refused by the other replica at once.
        revoked = http.post(f"{auth.url}/oauth/revoke", data={"token": token}, auth=DEMO_APP)
        assert revoked.status_code == 200
        refused = http.get(f"{two}/api/me", headers=bearer, timeout=10)
        assert refused.status_code == 401
        assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
        assert http.get(f"{one}/api/me", headers=bearer, timeout=10).status_code == 401
    finally:
        for service in services:
            service.stop()
