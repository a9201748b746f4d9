"""shared.service.flask_app.ServiceFlask: Flask's per-request coroutine check of each view and
hook is made once, after the first request; everything runs as under Flask."""

from __future__ import annotations

import flask.app
from flask import after_this_request

from shared.service.flask_app import ServiceFlask


def _app(ran: list[str]) -> ServiceFlask:
    app = ServiceFlask(__name__)

    @app.before_request
    def before() -> None:
        ran.append("before")

    @app.after_request
    def after(response):
        ran.append("after")
        return response

    @app.teardown_appcontext
    def teardown(_exc) -> None:
        ran.append("teardown")

    @app.get("/")
    def view():
        @after_this_request
        def just_this_once(response):  # a new function every request: checked as Flask does
            ran.append("after_this_request")
            return response

        ran.append("view")
        return "ok"

    return app


def test_hooks_and_views_run_and_are_checked_once_after_the_first_request(monkeypatch):
    ran: list[str] = []
    app = _app(ran)
    with app.app_context():  # teardown at start-up, before any request: nothing kept yet
        pass
    assert app._sync_functions is None
    client = app.test_client()
    assert client.get("/").text == "ok"
    checked = []
    real = flask.app.iscoroutinefunction
    monkeypatch.setattr(flask.app, "iscoroutinefunction", lambda f: checked.append(f) or real(f))
    ran.clear()
    assert client.get("/").text == "ok"
    assert ran == ["before", "view", "after_this_request", "after", "teardown"]
    # Only the function made by this request went through Flask's check.
    assert [f.__name__ for f in checked] == ["just_this_once"]
