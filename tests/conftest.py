"""Fixtures every test layer shares: fresh databases (SQLite always, PostgreSQL when
TEST_DATABASE_URL is set) and real HTTP servers on ephemeral loopback ports."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tests.databases import DATABASE_BACKENDS, TEST_DATABASE_URL, admin_engine
from tests.live_server import LiveServer

# The stand-in introspection endpoint's fixtures, for tests/resource_server and tests/shared.
pytest_plugins = ["tests.resource_server.fake_as_fixtures"]

# Fixtures that start a server, a process or a browser: a test using one of them, directly or
# through another fixture, is marked `live` (`make test-fast` leaves those out).
LIVE_FIXTURES = frozenset(
    {"serve", "gunicorn_auth", "gunicorn_services", "chromium", "fuzz_stack", "fake_as_server"}
)


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if LIVE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.live)


@pytest.fixture(params=DATABASE_BACKENDS)
def database_backend(request) -> str:
    return request.param


@pytest.fixture
def make_database_url(database_backend, tmp_path) -> Iterator[Callable[[str], str]]:
    """Return a factory: name -> URL of a fresh, empty database that lives for this test.

    PostgreSQL gets one schema per database (search_path in the URL): as isolated as a new
    database and ten times faster to create and drop.
    """
    schemas: list[str] = []

    def factory(name: str) -> str:
        if database_backend == "sqlite":
            return f"sqlite:///{tmp_path / (name + '.sqlite3')}"
        schema = f"t_{name}_{uuid.uuid4().hex[:12]}"
        with admin_engine().begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        schemas.append(schema)
        url = make_url(TEST_DATABASE_URL).update_query_dict({"options": f"-csearch_path={schema}"})
        return url.render_as_string(hide_password=False)

    yield factory
    if schemas:
        with admin_engine().begin() as conn:
            for schema in schemas:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


@pytest.fixture
def serve() -> Iterator[Callable[..., LiveServer]]:
    """serve(app=None) -> LiveServer; every server started is stopped after the test."""
    servers: list[LiveServer] = []

    def start(app=None, port: int = 0) -> LiveServer:
        server = LiveServer(app, port)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
