"""CORS as Chromium enforces it: a public client's page reads the token endpoint's answers and
calls the notes API with a bearer token (a preflighted request); a page of any other origin
cannot read either."""

from __future__ import annotations

import pytest
from flask import Flask

from auth_server.clients import register_client
from auth_server.db import db
from tests.support import NOTES, start_auth_server, start_resource_server

FETCH_TOKEN = """async (url) => {
  try {
    const response = await fetch(url, {
      method: "POST",
      headers: {"Content-Type": "application/x-www-form-urlencoded"},
      body: "grant_type=refresh_token&refresh_token=not-a-token&client_id=browser-spa",
    });
    return [response.status, (await response.json()).error];
  } catch (error) {
    return ["blocked", String(error)];
  }
}"""
FETCH_NOTES = """async ([url, token]) => {
  try {
    const response = await fetch(url, {headers: {"Authorization": "Bearer " + token}});
    return [response.status, response.headers.get("WWW-Authenticate")];
  } catch (error) {
    return ["blocked", String(error)];
  }
}"""


def page_app(name: str) -> Flask:
    app = Flask(name)

    @app.get("/")
    def index():
        return f"<!doctype html><title>{name}</title><h1>{name}</h1>"

    return app


@pytest.fixture
def stack(serve, make_database_url):
    spa, other = serve(page_app("spa")), serve(page_app("other"))
    auth = start_auth_server(serve, make_database_url("auth"))
    with auth.app.app_context():
        register_client(
            db.session,
            "browser-spa",
            client_type="public",
            grant_types=["authorization_code", "refresh_token"],
            scopes=["notes:read"],
            audiences=[NOTES],
            redirect_uris=[f"{spa.url}/callback"],
        )
    notes = start_resource_server(
        serve, make_database_url("notes"), auth, cors_allowed_origins=spa.url
    )
    return auth, notes, spa, other


def test_only_the_public_clients_page_reads_the_token_endpoint(stack, new_context):
    auth, _, spa, other = stack
    page = new_context().new_page()
    page.goto(spa.url + "/")
    assert page.evaluate(FETCH_TOKEN, f"{auth.url}/oauth/token") == [400, "invalid_grant"]
    page.goto(other.url + "/")
    status, _ = page.evaluate(FETCH_TOKEN, f"{auth.url}/oauth/token")
    assert status == "blocked"


def test_only_the_configured_origin_calls_the_notes_api_with_a_token(stack, new_context):
    auth, notes, spa, other = stack
    token = auth.login()["access_token"]
    page = new_context().new_page()
    page.goto(spa.url + "/")
    assert page.evaluate(FETCH_NOTES, [f"{notes.url}/api/notes", token]) == [200, None]
    status, challenge = page.evaluate(FETCH_NOTES, [f"{notes.url}/api/notes", "not-a-token"])
    assert status == 401 and 'error="invalid_token"' in challenge  # exposed to the page
    page.goto(other.url + "/")
    status, _ = page.evaluate(FETCH_NOTES, [f"{notes.url}/api/notes", token])
    assert status == "blocked"
