"""Fixtures every test layer shares: fresh databases (SQLite always, PostgreSQL when
TEST_DATABASE_URL is set) and real HTTP servers on ephemeral loopback ports."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from werkzeug.serving import make_server

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
DATABASE_BACKENDS = ["sqlite", "postgresql"] if TEST_DATABASE_URL else ["sqlite"]


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
        with _admin_engine().begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        schemas.append(schema)
        url = make_url(TEST_DATABASE_URL).update_query_dict({"options": f"-csearch_path={schema}"})
        return url.render_as_string(hide_password=False)

    yield factory
    if schemas:
        with _admin_engine().begin() as conn:
            for schema in schemas:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


_ADMIN_ENGINE = None


def _admin_engine():
    global _ADMIN_ENGINE
    if _ADMIN_ENGINE is None:
        _ADMIN_ENGINE = create_engine(TEST_DATABASE_URL, pool_size=1)
    return _ADMIN_ENGINE


class LiveServer:
    """A WSGI app served by werkzeug's threaded server on 127.0.0.1 and a free port.

    The port is bound before the app exists (``mount`` sets it later), because an
    authorization server's issuer is its own URL.
    """

    def __init__(self, app=None, port: int = 0) -> None:
        self.app = app
        self._server = make_server("127.0.0.1", port, self._dispatch, threaded=True)
        self.port = self._server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def _dispatch(self, environ, start_response):
        return self.app(environ, start_response)

    def mount(self, app) -> LiveServer:
        self.app = app
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        # Close the app's pool now: PostgreSQL would otherwise collect idle connections.
        extensions = getattr(self.app, "extensions", {})
        if "sqlalchemy" in extensions:
            with self.app.app_context():
                extensions["sqlalchemy"].engine.dispose()


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
