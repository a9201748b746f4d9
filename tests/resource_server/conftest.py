"""Fixtures for the resource-server tests: a stand-in introspection endpoint, settings and apps
on a fresh database per test (SQLite, and PostgreSQL when TEST_DATABASE_URL is set)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from resource_server import create_app
from resource_server.db import db
from resource_server.settings import ResourceSettings
from shared.guard.protect import EXTENSION_KEY


@pytest.fixture
def make_settings(make_database_url, fake_as) -> Callable[..., ResourceSettings]:
    def factory(**overrides: Any) -> ResourceSettings:
        values: dict[str, Any] = {
            "tessera_demo": False,
            "resource_database_url": make_database_url("resource"),
            "auth_server_url": fake_as.url,
            "resource_client_id": fake_as.client_id,
            "resource_client_secret": fake_as.client_secret,
            # short, so the timeout tests stay fast
            "introspection_connect_timeout": 0.5,
            "introspection_read_timeout": 0.3,
            "introspection_retry_after": 7,
            **overrides,
        }
        return ResourceSettings(**values)

    return factory


@pytest.fixture
def make_app(make_settings) -> Iterator[Callable[..., Flask]]:
    apps: list[Flask] = []

    def factory(settings: ResourceSettings | None = None, **kwargs: Any) -> Flask:
        kwargs.setdefault("create_tables", True)
        app = create_app(settings or make_settings(), **kwargs)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        # Close pools now: PostgreSQL would otherwise collect idle connections test after test.
        with app.app_context():
            db.engine.dispose()
        app.extensions[EXTENSION_KEY].introspection_client.close()


@pytest.fixture
def app(make_app) -> Flask:
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()
