"""Each service's Alembic migrations build exactly the schema its models describe.

The upgrade is the real one (`flask --app <service> db upgrade`, the database URL in the
environment), on a fresh SQLite database and, with TEST_DATABASE_URL, a fresh PostgreSQL
schema. Alembic's own autogenerate comparison (tables, columns, types, nullability, indexes,
unique constraints, foreign keys) must then find nothing to do: a model change without a
migration fails here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import flask_migrate
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

import auth_server
import resource_server
from auth_server.db import db as auth_db
from auth_server.models import Client, SigningKey, User
from resource_server.db import db as resource_db
from resource_server.settings import ResourceSettings
from shared.service.settings import PROJECT_ROOT
from tests.support import FAST_PASSWORDS, SESSION_SECRET, auth_settings

FLASK = str(Path(sys.executable).with_name("flask"))


@dataclass
class Service:
    name: str  # the package, as in `flask --app <name>`
    url_variable: str
    db: object
    tables: set[str]
    head: str  # the latest revision

    def create_app(self, database_url: str):
        if self.name == "auth_server":
            return auth_server.create_app(auth_settings(database_url, "http://127.0.0.1:8000"))
        return resource_server.create_app(
            ResourceSettings(
                resource_database_url=database_url,
                resource_client_id="rs",
                resource_client_secret="rs-secret",
                log_level="ERROR",
            )
        )


SERVICES = {
    "auth_server": Service(
        "auth_server",
        "AUTH_DATABASE_URL",
        auth_db,
        {
            "users",
            "clients",
            "refresh_families",
            "refresh_tokens",
            "access_tokens",
            "signing_keys",
            "audit_events",
            "authorization_codes",
            "login_attempts",
            "dpop_proofs_seen",
            "consents",
            "revocation_generation",
            "revoked_access_tokens",
        },
        "0009_revoked_access_tokens",
    ),
    "resource_server": Service(
        "resource_server",
        "RESOURCE_DATABASE_URL",
        resource_db,
        {"notes", "dpop_proofs_seen"},
        "0002_dpop",
    ),
}


@pytest.fixture(params=list(SERVICES))
def service(request) -> Service:
    return SERVICES[request.param]


@pytest.fixture
def apps() -> Iterator[list]:
    """Apps built by a test; their pools are closed afterwards (PostgreSQL counts them)."""
    built: list = []
    yield built
    for app in built:
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()


def flask_cli(service: Service, database_url: str, *args: str, **env: str) -> str:
    """`flask --app <service> <args>` in a subprocess, configured only by its environment."""
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AUTH_", "RESOURCE_"))},
        service.url_variable: database_url,
        "AUTH_KEY_ENCRYPTION_KEY_FILE": "/nonexistent/tessera-test.key",
        "AUTH_SESSION_SECRET": SESSION_SECRET,
        "RESOURCE_CLIENT_ID": "rs",
        "RESOURCE_CLIENT_SECRET": "rs-secret",
        "LOG_LEVEL": "ERROR",
        **env,
    }
    result = subprocess.run(
        [FLASK, "--app", service.name, *args],
        cwd=PROJECT_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"flask {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout + result.stderr


def drift(app, db) -> list:
    """What `flask db migrate` would generate: empty when migrations and models agree."""
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, db.metadata)


def tables(app, db) -> set[str]:
    with app.app_context():
        return set(inspect(db.engine).get_table_names())


def search_path_schema(database_url: str) -> str | None:
    options = make_url(database_url).query.get("options", "")
    return options.split("search_path=", 1)[1] if "search_path=" in options else None


@pytest.mark.live  # runs `flask` / python in a subprocess
def test_upgrade_builds_exactly_the_models_schema(service, make_database_url, apps):
    url = make_database_url(service.name)
    output = flask_cli(service, url, "db", "upgrade")
    assert "Running upgrade" in output

    app = service.create_app(url)
    apps.append(app)
    assert tables(app, service.db) == service.tables | {"alembic_version"}
    assert drift(app, service.db) == []
    with app.app_context(), service.db.engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_heads() == (service.head,)

    schema = search_path_schema(url)
    if schema is not None:
        # PostgreSQL: the version table and every table landed in the test's own schema.
        with app.app_context(), service.db.engine.connect() as connection:
            placed = connection.execute(
                text(
                    "SELECT table_schema, table_name FROM information_schema.tables "
                    "WHERE table_name = ANY(:names)"
                ),
                {"names": sorted(service.tables | {"alembic_version"})},
            ).all()
        assert {name for where, name in placed if where == schema} == service.tables | {
            "alembic_version"
        }


def test_downgrade_to_base_then_upgrade_again(service, make_database_url, apps):
    url = make_database_url(service.name)
    app = service.create_app(url)
    apps.append(app)
    with app.app_context():
        flask_migrate.upgrade()
        flask_migrate.downgrade(revision="base")
    assert tables(app, service.db) == {"alembic_version"}
    with app.app_context():
        flask_migrate.upgrade()
    assert tables(app, service.db) == service.tables | {"alembic_version"}
    assert drift(app, service.db) == []


def test_signing_key_partial_unique_indexes_hold_after_upgrade(make_database_url, apps):
    """One active and at most one next key per algorithm, enforced by the migrated database
    on SQLite and PostgreSQL alike (the comparison above does not look at WHERE clauses)."""
    url = make_database_url("auth")
    app = SERVICES["auth_server"].create_app(url)
    apps.append(app)
    insert = text(
        "INSERT INTO signing_keys (kid, alg, state, private_key, private_key_encrypted, "
        "public_jwk, created_at) VALUES (:kid, 'ES256', :state, 'k', false, '{}', 0)"
    )
    with app.app_context():
        flask_migrate.upgrade()
        engine = auth_db.engine
        with engine.begin() as connection:
            for kid, state in (("a1", "active"), ("n1", "next"), ("r1", "retired")):
                connection.execute(insert, {"kid": kid, "state": state})
            # any number of retired keys
            connection.execute(insert, {"kid": "r2", "state": "retired"})
        for kid, state in (("a2", "active"), ("n2", "next")):
            with pytest.raises(IntegrityError), engine.begin() as connection:
                connection.execute(insert, {"kid": kid, "state": state})


def test_notes_ids_are_never_reused_on_sqlite(tmp_path, apps):
    """The migration keeps the model's sqlite_autoincrement (which comparison cannot see)."""
    url = f"sqlite:///{tmp_path / 'notes.sqlite3'}"
    app = SERVICES["resource_server"].create_app(url)
    apps.append(app)
    with app.app_context():
        flask_migrate.upgrade()
        with resource_db.engine.connect() as connection:
            sql = connection.execute(
                text("SELECT sql FROM sqlite_master WHERE name = 'notes'")
            ).scalar_one()
    assert "AUTOINCREMENT" in sql


@pytest.mark.live  # runs `flask` / python in a subprocess
def test_demo_setup_seeds_a_freshly_migrated_database(make_database_url, tmp_path, apps):
    """`make run` order: upgrade, then demo setup, which adds rows and creates no table.
    Idempotent: compose's one-shot migrate service runs it on every `up`."""
    service = SERVICES["auth_server"]
    url = make_database_url("auth")
    demo = {
        "TESSERA_DEMO": "1",
        "AUTH_KEY_ENCRYPTION_KEY_FILE": str(tmp_path / "kek"),
        # demo mode generates the session secret when none is given
        "AUTH_SESSION_SECRET": "",
        "AUTH_SESSION_SECRET_FILE": str(tmp_path / "session-secret"),
        **{name.upper(): str(value) for name, value in FAST_PASSWORDS.items()},
    }
    flask_cli(service, url, "db", "upgrade")
    for _ in range(2):
        assert "demo data" in flask_cli(service, url, "demo", "setup", **demo)
    assert len((tmp_path / "session-secret").read_text()) >= 32
    app = service.create_app(url)
    apps.append(app)
    with app.app_context():
        clients = {c.client_id: c for c in auth_db.session.scalars(select(Client))}
        assert set(clients) == {"demo-app", "demo-spa", "demo-web", "notes-api"}
        assert clients["demo-spa"].client_type == "public"
        assert clients["demo-spa"].redirect_uris == "http://127.0.0.1:8002/callback"
        assert auth_db.session.scalars(select(User.username)).all() == ["alice"]
        states = auth_db.session.scalars(select(SigningKey.state)).all()
        assert sorted(states) == ["active", "next"]
        auth_db.session.remove()


@pytest.mark.live  # runs `flask` / python in a subprocess
def test_demo_setup_on_an_empty_database_asks_for_the_upgrade(make_database_url, tmp_path):
    service = SERVICES["auth_server"]
    result = subprocess.run(
        [FLASK, "--app", "auth_server", "demo", "setup"],
        cwd=PROJECT_ROOT,
        env={
            **os.environ,
            "AUTH_DATABASE_URL": make_database_url("auth"),
            "TESSERA_DEMO": "1",
            "AUTH_KEY_ENCRYPTION_KEY_FILE": str(tmp_path / "kek"),
            "AUTH_SESSION_SECRET_FILE": str(tmp_path / "session-secret"),
            "LOG_LEVEL": "ERROR",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert f"flask --app {service.name} db upgrade" in result.stderr
