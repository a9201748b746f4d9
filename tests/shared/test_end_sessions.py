"""A request whose database connection died after its last statement still gets its answer:
the closing rollback's error invalidates the connection instead of escaping the app."""

from __future__ import annotations

from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from shared.service.database import end_sessions_without_failing


def test_a_connection_that_dies_before_the_closing_rollback_is_invalidated_not_a_500(tmp_path):
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{tmp_path / 'x.sqlite3'}"
    db = SQLAlchemy()
    db.init_app(app)
    end_sessions_without_failing(app, db.session)
    invalidated = []

    @app.get("/")
    def view():
        db.session.execute(text("SELECT 1"))
        session = db.session.registry()

        # The database goes away between the last statement and the end of the request: what
        # PostgreSQL does when a proxy resets the connection (tests/faults/test_database_down.py).
        real_close = session.close
        failures = [OperationalError("ROLLBACK", None, ConnectionError("connection closed"))]

        def close():  # the first close meets the dead connection; later ones find it gone
            if failures:
                raise failures.pop()
            real_close()

        real_invalidate = session.invalidate
        session.close = close
        session.invalidate = lambda: invalidated.append(True) or real_invalidate()
        return "ok"

    response = app.test_client().get("/")
    assert response.status_code == 200
    assert invalidated == [True]


def test_each_request_ends_its_own_session_and_a_request_without_one_ends_none(tmp_path):
    """Sessions are scoped by app context: ending a request that used none neither creates one
    nor touches the session another request in the process still holds."""
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{tmp_path / 'x.sqlite3'}"
    db = SQLAlchemy()
    db.init_app(app)
    end_sessions_without_failing(app, db.session)
    live = db.session.registry.registry
    with app.app_context():
        pass  # a request that used no session, alone in the process
    assert live == {}
    with app.app_context():
        db.session.execute(text("SELECT 1"))
        held = db.session.registry()
        with app.app_context():
            pass  # another request, using none, ends while the first holds its session
        assert list(live.values()) == [held]
        assert held.in_transaction()
    assert live == {}
    assert not held.in_transaction()
