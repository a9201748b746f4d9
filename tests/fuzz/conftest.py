"""Both services under gunicorn, as deployed, on SQLite and (with TEST_DATABASE_URL) PostgreSQL,
seeded, with the credentials the fuzzers authenticate with."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
from sqlalchemy import text
from sqlalchemy.engine import make_url

import resource_server
from auth_server import create_app
from tests.databases import DATABASE_BACKENDS, TEST_DATABASE_URL, admin_engine
from tests.processes import GunicornService, free_port, settings_env
from tests.support import (
    ALICE,
    BOB,
    DEMO_APP,
    AuthServer,
    auth_settings,
    resource_settings,
    seed,
    start_auth_server,
    start_resource_server,
)


@dataclass
class FuzzStack:
    backend: str
    auth_url: str
    resource_url: str
    # Bearer tokens for the notes API: alice has every scope, bob profile and notes:read.
    alice_token: str
    bob_token: str
    # Tokens for the authorization server's own fuzzing (introspected, maybe revoked by it):
    # never the ones above, so the notes API run is not disturbed.
    spare_access_token: str
    spare_refresh_token: str


@pytest.fixture(scope="module", params=DATABASE_BACKENDS)
def fuzz_stack(request, tmp_path_factory) -> Iterator[FuzzStack]:
    backend = request.param
    schemas: list[str] = []

    def database_url(name: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path_factory.mktemp('fuzz') / (name + '.sqlite3')}"
        schema = f"t_fuzz_{name}_{uuid.uuid4().hex[:12]}"
        with admin_engine().begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        schemas.append(schema)
        url = make_url(TEST_DATABASE_URL).update_query_dict({"options": f"-csearch_path={schema}"})
        return url.render_as_string(hide_password=False)

    port = free_port()
    settings = auth_settings(
        database_url("auth"),
        f"http://127.0.0.1:{port}",
        # outlives the run, so "not active" is never the token expiring mid-run
        access_token_ttl=3600,
    )
    seed(create_app(settings, create_tables=True))
    services = []
    try:
        auth_service = GunicornService(
            "auth_server", settings_env(settings), workers=2, port=port
        ).start()
        services.append(auth_service)
        auth = AuthServer(url=auth_service.url, app=None, settings=settings, server=auth_service)
        rs_settings = resource_settings(database_url("notes"), auth)
        resource_server.create_app(rs_settings, create_tables=True)
        rs_service = GunicornService("resource_server", settings_env(rs_settings), workers=2)
        services.append(rs_service.start())
        spare = auth.login(ALICE, DEMO_APP)
        yield FuzzStack(
            backend=backend,
            auth_url=auth.url,
            resource_url=rs_service.url,
            alice_token=auth.login(ALICE, DEMO_APP)["access_token"],
            bob_token=auth.login(BOB, DEMO_APP)["access_token"],
            spare_access_token=spare["access_token"],
            spare_refresh_token=spare["refresh_token"],
        )
    finally:
        for service in services:
            service.stop()
        if schemas:
            with admin_engine().begin() as conn:
                for schema in schemas:
                    conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture
def auth(serve, make_database_url):
    """A seeded authorization server on a werkzeug server, with login throttling out of the
    way so a fuzzer's many wrong passwords keep reaching the password check."""
    return start_auth_server(
        serve,
        make_database_url("auth"),
        login_failures_per_username="1000000 per 5 minutes",
        login_failures_per_ip="1000000 per 5 minutes",
        login_failures_per_username_and_ip="1000000 per 5 minutes",
    )


@pytest.fixture
def notes_api(serve, make_database_url, auth):
    return start_resource_server(serve, make_database_url("notes"), auth)
