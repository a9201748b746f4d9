"""The answers the fuzzers rarely reach (a login, a refresh, a code exchange, a password
change, an active introspection, each error status the document promises) conform to the
OpenAPI documents: status, content type, headers and body schema. Each answer's status is
asserted too, so the behaviour the documents describe is the behaviour the services have."""

from __future__ import annotations

import json

import pytest
import requests
import schemathesis

from shared.service.openapi import load_document
from tests.fuzz.api_fuzzer import CHECKS
from tests.support import (
    ALICE,
    BOB,
    DEMO_APP,
    NOTES_API,
    OTHER_APP,
    REPORTS,
    REPORTS_API,
    SERVICE_APP,
    SPA_APP,
    SPA_REDIRECT,
    Browser,
    code_request,
    pkce_pair,
    query_of,
    start_auth_server,
)

pytestmark = pytest.mark.slow


class Conformance:
    """Checks responses against one service's document."""

    def __init__(self, package: str):
        self.schema = schemathesis.openapi.from_dict(load_document(package))

    def check(self, label: str, response: requests.Response, **path) -> requests.Response:
        operation = self.schema.find_operation_by_label(label)
        assert operation is not None, f"{label} is not documented"
        operation.Case(path_parameters=path).validate_response(response, checks=CHECKS)
        return response


def chunked(body: bytes):
    """A body requests sends with Transfer-Encoding: chunked and no Content-Length."""
    yield body


def test_authorization_server_answers_conform_to_its_document(auth):
    doc = Conformance("auth_server")
    http = requests.Session()
    url = auth.url

    def post(path, data, client=None, **kwargs):
        response = http.post(url + path, data=data, auth=client, timeout=10, **kwargs)
        return doc.check(f"POST {path}", response)

    login = post(
        "/oauth/token",
        {"grant_type": "password", "username": "alice", "password": "wonderland"},
        DEMO_APP,
    )
    assert login.status_code == 200
    tokens = login.json()
    assert post("/oauth/token", {"grant_type": "client_credentials"}, SERVICE_APP).ok
    refreshed = post(
        "/oauth/token",
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        DEMO_APP,
    )
    assert refreshed.status_code == 200
    assert post("/oauth/token", {"grant_type": "nonsense"}, DEMO_APP).status_code == 400
    assert post("/oauth/token", {"grant_type": "password"}, ("demo-app", "x")).status_code == 401
    too_large = post("/oauth/token", {"grant_type": "x" * (auth.settings.max_request_bytes + 1)})
    assert too_large.status_code == 413
    chunked_too_large = post(
        "/oauth/token",
        chunked(b"grant_type=" + b"x" * auth.settings.max_request_bytes),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert chunked_too_large.status_code == 413

    access = refreshed.json()["access_token"]
    active = post("/oauth/introspect", {"token": access}, NOTES_API)
    assert active.json()["active"] is True
    inactive = {"active": False}
    assert post("/oauth/introspect", {"token": "unknown"}, NOTES_API).json() == inactive
    # RFC 7662 §4: another audience's access token and any refresh token are inactive to a
    # resource server.
    assert post("/oauth/introspect", {"token": access}, REPORTS_API).json() == inactive
    refresh = refreshed.json()["refresh_token"]
    assert post("/oauth/introspect", {"token": refresh}, NOTES_API).json() == inactive
    assert post("/oauth/introspect", {"token": access}, DEMO_APP).status_code == 401
    # RFC 7009 §2.1/§2.2: another client's token gets the unknown token's answer, and lives.
    others = post("/oauth/revoke", {"token": access}, OTHER_APP)
    assert (others.status_code, others.json()) == (200, {})
    assert post("/oauth/introspect", {"token": access}, NOTES_API).json()["active"] is True
    assert post("/oauth/revoke", {"token": access}, DEMO_APP).status_code == 200

    # Browser login: the page, the form posted back, the code exchanged by a public client.
    verifier, challenge = pkce_pair()
    params = code_request(challenge=challenge)
    browser = Browser(auth)
    page = doc.check("GET /oauth/authorize", browser.authorize(**params))
    assert page.status_code == 200
    redirected = doc.check("POST /oauth/authorize", browser.submit(page))
    assert redirected.status_code == 303
    exchanged = post(
        "/oauth/token",
        {
            "grant_type": "authorization_code",
            "client_id": SPA_APP,
            "code": query_of(redirected.headers["Location"])["code"],
            "redirect_uri": SPA_REDIRECT,
            "code_verifier": verifier,
        },
    )
    assert exchanged.status_code == 200
    wrong = doc.check(
        "POST /oauth/authorize", browser.submit(browser.authorize(**params), BOB[:1] + ("nope",))
    )
    assert wrong.status_code == 200
    stale = doc.check("POST /oauth/authorize", browser.submit(page))
    assert stale.status_code == 400
    # An error answering the login POST redirects with 303 too (RFC 9700 §4.12): bob may not
    # grant notes:write, so access_denied (RFC 6749 §4.1.2.1).
    denied = doc.check(
        "POST /oauth/authorize",
        browser.login(BOB, **{**params, "scope": "profile notes:write"}),
    )
    assert denied.status_code == 303
    assert query_of(denied.headers["Location"])["error"] == "access_denied"
    error_redirect = doc.check(
        "GET /oauth/authorize", browser.authorize(**{**params, "response_type": "token"})
    )
    assert error_redirect.status_code == 302
    unknown_client = doc.check(
        "GET /oauth/authorize", browser.authorize(client_id="nobody", redirect_uri=SPA_REDIRECT)
    )
    assert unknown_client.status_code == 400

    changed = post(
        "/account/password",
        {
            "username": BOB[0],
            "current_password": BOB[1],
            "new_password": "a-new-password-for-bob",
        },
        DEMO_APP,
    )
    assert changed.status_code == 200

    for path in (
        "/.well-known/oauth-authorization-server",
        "/.well-known/jwks.json",
        "/healthz",
        "/readyz",
        "/openapi.json",
    ):
        assert doc.check(f"GET {path}", http.get(url + path, timeout=10)).status_code == 200


def test_notes_api_answers_conform_to_its_document(auth, notes_api):
    doc = Conformance("resource_server")
    alice = auth.login()["access_token"]
    bob = auth.login(BOB)["access_token"]

    def call(label, token=None, path=None, **kwargs):
        method, _, template = label.partition(" ")
        response = notes_api.call(method, path or template, token, **kwargs)
        note_id = path.rpartition("/")[2] if "{note_id}" in label else None
        return doc.check(label, response, **({"note_id": int(note_id)} if note_id else {}))

    assert call("GET /api/me", alice).status_code == 200
    created = call("POST /api/notes", alice, json={"body": "hello"})
    assert created.status_code == 201
    note = f"/api/notes/{created.json()['id']}"
    assert call("GET /api/notes", alice).status_code == 200
    assert call("GET /api/notes/{note_id}", alice, note).status_code == 200
    assert call("GET /api/notes/{note_id}", bob, note).status_code == 404
    assert call("DELETE /api/notes/{note_id}", alice, note).status_code == 204
    assert call("DELETE /api/notes/{note_id}", alice, note).status_code == 404

    assert call("GET /api/me").status_code == 401
    assert call("GET /api/me", "not-a-token").status_code == 401
    # RFC 9068 §4: a token for another resource is invalid here, not a scope problem.
    reports_only = auth.login(ALICE, OTHER_APP, resource=REPORTS)["access_token"]
    other_audience = call("GET /api/me", reports_only)
    assert other_audience.status_code == 401
    assert other_audience.json()["error"] == "invalid_token"
    assert 'error="invalid_token"' in other_audience.headers["WWW-Authenticate"]
    beyond_the_column = call("GET /api/notes/{note_id}", alice, "/api/notes/2147483648")
    assert beyond_the_column.status_code == 404
    assert call("DELETE /api/notes/{note_id}", alice, "/api/notes/2147483648").status_code == 404
    assert call("POST /api/notes", bob, json={"body": "no"}).status_code == 403
    assert call("GET /api/notes", alice, "/api/notes?access_token=x").status_code == 400
    assert call("POST /api/notes", alice, json={"body": ""}).status_code == 400
    assert (
        call(
            "POST /api/notes", alice, data="body", headers={"Content-Type": "text/plain"}
        ).status_code
        == 415
    )
    big = "x" * notes_api.settings.max_request_bytes
    assert call("POST /api/notes", alice, json={"body": big}).status_code == 413
    chunked_big = call(
        "POST /api/notes",
        alice,
        data=chunked(json.dumps({"body": big}).encode()),
        headers={"Content-Type": "application/json"},
    )
    assert chunked_big.status_code == 413

    for path in ("/healthz", "/readyz", "/openapi.json"):
        assert call(f"GET {path}").status_code == 200


def test_throttled_logins_answer_as_documented(serve, make_database_url):
    """429 with Retry-After (RFC 6585 §4) at the token endpoint's password grant and at the
    login page, as each document says: past the username's limit, before any hashing."""
    auth = start_auth_server(
        serve, make_database_url("auth"), login_failures_per_username="2 per 5 minutes"
    )
    doc = Conformance("auth_server")
    wrong = {"grant_type": "password", "username": ALICE[0], "password": "not-it"}
    answers = [doc.check("POST /oauth/token", auth.token(DEMO_APP, **wrong)) for _ in range(3)]
    assert [a.status_code for a in answers] == [400, 400, 429]
    assert int(answers[-1].headers["Retry-After"]) >= 1

    _, challenge = pkce_pair()
    browser = Browser(auth)
    page = browser.authorize(**code_request(challenge=challenge))
    pages = [
        doc.check("POST /oauth/authorize", browser.submit(page, (BOB[0], "not-it")))
        for _ in range(3)
    ]
    assert [p.status_code for p in pages] == [200, 200, 429]
    assert int(pages[-1].headers["Retry-After"]) >= 1
