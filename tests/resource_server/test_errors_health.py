"""Health endpoints and the JSON shape of every error the resource server produces.

A stand-in introspection endpoint (fake_as.py) supplies tokens where a request must get past
the guard, because these tests exercise the resource server's own failures (its database down,
its pool exhausted) and need an AS that always answers. The real end-to-end tests live in
tests/end_to_end/.
"""

from __future__ import annotations

import pytest
import sqlalchemy.exc

from tests.resource_server.helpers import bearer

# Port 9 (discard) on loopback: nothing listens, so connecting is refused at once.
UNREACHABLE_DATABASE = "postgresql+psycopg://nobody@127.0.0.1:9/nothing"


def test_healthz_is_ok(client):
    """/healthz answers 200 {"status": "ok"} while the process is up."""
    response = client.get("/healthz")
    assert (response.status_code, response.json) == (200, {"status": "ok"})


def test_readyz_is_ok_when_database_answers(client):
    """/readyz answers 200 when SELECT 1 succeeds."""
    response = client.get("/readyz")
    assert (response.status_code, response.json["status"]) == (200, "ok")


def test_readyz_is_503_when_database_is_down(make_app, make_settings):
    """/readyz answers 503 JSON with Retry-After when the database does not answer."""
    app = make_app(make_settings(resource_database_url=UNREACHABLE_DATABASE), create_tables=False)
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["status"] == "unavailable"
    assert response.headers["Retry-After"] == "7"


def test_database_down_gets_503_with_retry_after(make_app, make_settings, fake_as):
    """A guarded request whose database is down: 503 JSON, not 500."""
    app = make_app(make_settings(resource_database_url=UNREACHABLE_DATABASE), create_tables=False)
    token = fake_as.issue("notes:read")
    response = app.test_client().get("/api/notes", headers=bearer(token))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "7"
    assert response.json["error"] == "temporarily_unavailable"


def test_pool_timeout_gets_503_with_retry_after(make_app):
    """An exhausted connection pool (SQLAlchemy TimeoutError) is a 503, not a 500."""
    app = make_app()

    @app.get("/pool-exhausted")
    def pool_exhausted():
        raise sqlalchemy.exc.TimeoutError("QueuePool limit reached")

    response = app.test_client().get("/pool-exhausted")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "7"
    assert response.json["error"] == "temporarily_unavailable"


def test_unknown_path_is_json_404(client):
    """An unknown URL is a JSON 404, never an HTML page."""
    response = client.get("/nowhere")
    assert response.status_code == 404
    assert response.mimetype == "application/json"
    assert response.json["error"] == "not_found"


def test_wrong_method_is_json_405_with_allow(client):
    """A wrong method is a JSON 405 that keeps the Allow header."""
    response = client.put("/api/notes")
    assert response.status_code == 405
    assert response.mimetype == "application/json"
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "POST"}
    assert response.json["error"] == "method_not_allowed"


def test_unexpected_exception_is_json_500(make_app):
    """Even a bug answers JSON, not Flask's HTML error page."""
    app = make_app()

    @app.get("/boom")
    def boom():
        raise RuntimeError("bug")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert response.mimetype == "application/json"
    assert response.json == {"error": "server_error"}


@pytest.mark.parametrize("path", ["/healthz", "/nowhere", "/api/notes"])
def test_every_response_carries_a_request_id(client, path):
    """Errors and health answers carry X-Request-ID too."""
    assert client.get(path, headers={"X-Request-ID": "abc"}).headers["X-Request-ID"] == "abc"
