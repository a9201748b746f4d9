"""Each app's audit trail: the events an app commits are logged once and reach that app's
listeners alone, also with two apps in one process (their request sessions share
Flask-SQLAlchemy's session factory)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from flask import Flask

from auth_server import audit, create_app
from auth_server.db import db
from tests.support import auth_settings

ISSUER = "http://127.0.0.1:8000"


def two_apps(make_database_url) -> dict[str, Flask]:
    return {
        name: create_app(auth_settings(make_database_url(name), ISSUER), create_tables=True)
        for name in ("first", "second")
    }


def listened(apps: dict[str, Flask]) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {name: [] for name in apps}
    for name, app in apps.items():
        app.extensions["tessera"].audit_trail.subscribe(
            lambda event, fields, events=seen[name]: events.append(event)
        )
    return seen


class Collected(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def audit_log() -> Iterator[list[str]]:
    """The messages of the tessera.audit log (configure_logging stops it propagating)."""
    logger = logging.getLogger("tessera.audit")
    handler, level = Collected(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.messages
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_an_app_hears_only_the_audit_events_it_commits(make_database_url, audit_log) -> None:
    apps = two_apps(make_database_url)
    seen = listened(apps)
    with apps["first"].app_context():
        audit.record(db.session, "user_created", actor="operator", at=1)
        db.session.commit()
    with apps["second"].app_context():
        audit.record(db.session, "client_created", actor="operator", at=2)
        db.session.commit()
    assert seen == {"first": ["user_created"], "second": ["client_created"]}
    # Two trails hook the shared request sessions; each event is still logged once.
    assert audit_log == ["user_created", "client_created"]


def test_a_rolled_back_audit_event_is_never_published(make_database_url) -> None:
    apps = two_apps(make_database_url)
    seen = listened(apps)
    with apps["second"].app_context():
        audit.record(db.session, "user_disabled", actor="operator", at=1)
        db.session.rollback()
        audit.record(db.session, "user_enabled", actor="operator", at=2)
        db.session.commit()
    assert seen == {"first": [], "second": ["user_enabled"]}


def test_the_apps_own_sessions_outside_a_request_publish_too(make_database_url) -> None:
    apps = two_apps(make_database_url)
    seen = listened(apps)
    components = apps["first"].extensions["tessera"]
    with components.sessions() as session:
        audit.record(session, "signing_key_rotated", actor="operator", at=1)
        session.commit()
    assert seen == {"first": ["signing_key_rotated"], "second": []}


def test_an_unknown_audit_event_is_refused(make_database_url) -> None:
    app = create_app(auth_settings(make_database_url("only"), ISSUER), create_tables=True)
    with app.app_context(), pytest.raises(ValueError):
        audit.record(db.session, "no_such_event", actor="operator", at=1)
