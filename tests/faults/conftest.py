"""Fixtures for fault tests: both services as real gunicorn processes, and TCP proxies that
stand between a service and PostgreSQL so a test can take the database away and bring it back."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy.engine import make_url

import resource_server
from auth_server import create_app
from tests.databases import TEST_DATABASE_URL
from tests.faults.tcp_proxy import TcpProxy
from tests.processes import GunicornService, free_port, settings_env
from tests.support import AuthServer, auth_settings, resource_settings, seed


def _dispose(app) -> None:
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


# What an unhandled exception leaves in a service's log: Flask's "Exception on <path>",
# gunicorn's "Error handling request", a 500 in the access log.
SERVER_ERROR_MARKERS = ("Exception on ", "Error handling request", '" 500 ')


def server_errors(service: GunicornService) -> list[str]:
    return [
        line
        for line in service.logs().splitlines()
        if any(marker in line for marker in SERVER_ERROR_MARKERS)
    ]


@pytest.fixture
def gunicorn_services() -> Iterator[list[GunicornService]]:
    """Every GunicornService a test appends here is stopped after it, and its log must show no
    unhandled exception and no 500, whatever the test did to it."""
    services: list[GunicornService] = []
    yield services
    errors = []
    for service in services:
        with contextlib.suppress(Exception):
            service.stop()
        errors += [f"{service.module}: {line[:300]}" for line in server_errors(service)]
    if errors:
        pytest.fail("server errors in the logs:\n" + "\n".join(errors[:10]), pytrace=False)


@pytest.fixture
def start_auth(gunicorn_services) -> Callable[..., AuthServer]:
    """start_auth(database_url, seed_url=None, workers=2, **settings) -> seeded AS under gunicorn.

    Seeding runs in this process on `seed_url` (default: `database_url`), so a test can seed
    directly and let the server reach the same database through a proxy.
    """

    def start(
        database_url: str,
        *,
        seed_url: str | None = None,
        workers: int = 2,
        env: dict[str, str] | None = None,
        **overrides,
    ) -> AuthServer:
        port = free_port()
        issuer = f"http://127.0.0.1:{port}"
        seeding = create_app(
            auth_settings(seed_url or database_url, issuer, **overrides), create_tables=True
        )
        seed(seeding)
        _dispose(seeding)
        settings = auth_settings(database_url, issuer, **overrides)
        service = GunicornService(
            "auth_server",
            {**settings_env(settings), **(env or {})},
            workers=workers,
            port=port,
        )
        gunicorn_services.append(service)
        service.start()
        return AuthServer(url=service.url, app=None, settings=settings, server=service)

    return start


@pytest.fixture
def restart_auth(gunicorn_services) -> Callable[[AuthServer], GunicornService]:
    """A new gunicorn master for `auth` on the same port and database (after a kill)."""

    def restart(auth: AuthServer, workers: int = 2, timeout: float = 30) -> GunicornService:
        service = GunicornService(
            "auth_server", settings_env(auth.settings), workers=workers, port=auth.server.port
        )
        gunicorn_services.append(service)
        auth.server = service.start(timeout=timeout)
        return service

    return restart


@pytest.fixture
def start_resource(gunicorn_services) -> Callable[..., tuple[str, GunicornService, object]]:
    """start_resource(database_url, auth, create_url=None, **settings) -> (url, service,
    settings): an RS under gunicorn introspecting at `auth`; tables are created in this process
    on `create_url` (default: `database_url`)."""

    def start(
        database_url: str,
        auth: AuthServer,
        *,
        create_url: str | None = None,
        workers: int = 2,
        **overrides,
    ):
        settings = resource_settings(database_url, auth, **overrides)
        creating = resource_server.create_app(
            settings.model_copy(update={"resource_database_url": create_url or database_url}),
            create_tables=True,
        )
        _dispose(creating)
        service = GunicornService("resource_server", settings_env(settings), workers=workers)
        gunicorn_services.append(service)
        service.start()
        return service.url, service, settings

    return start


@pytest.fixture
def proxies() -> Iterator[Callable[[], TcpProxy]]:
    """proxies() -> a started TcpProxy to TEST_DATABASE_URL's server; all closed after the test."""
    started: list[TcpProxy] = []
    target = make_url(TEST_DATABASE_URL) if TEST_DATABASE_URL else None

    def start() -> TcpProxy:
        assert target is not None, "proxies need TEST_DATABASE_URL"
        proxy = TcpProxy(target.port or 5432, target.host or "127.0.0.1").start()
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.close()
