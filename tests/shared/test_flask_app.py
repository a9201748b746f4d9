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


def test_after_the_first_request_the_check_is_a_table_lookup_that_still_sees_new_functions(
    monkeypatch,
):
    """ensure_sync becomes the kept table's own lookup; a function the table does not hold (an
    error handler, an after_this_request function) still goes through Flask's check."""
    ran: list[str] = []
    app = _app(ran)

    @app.errorhandler(404)
    def not_found(_error):
        ran.append("not_found")
        return "none", 404

    client = app.test_client()
    client.get("/")
    assert app.ensure_sync == app._sync_functions.__getitem__
    checked = []
    real = flask.app.iscoroutinefunction
    monkeypatch.setattr(flask.app, "iscoroutinefunction", lambda f: checked.append(f) or real(f))
    ran.clear()
    assert client.get("/nowhere").status_code == 404
    assert ran == ["before", "not_found", "after", "teardown"]
    assert [f.__name__ for f in checked] == ["not_found"]
