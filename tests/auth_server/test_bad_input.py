"""Bad input of any kind gets a clear 4xx, never a 500, and changes no stored state."""

from __future__ import annotations

import socket

import pytest
import requests
from sqlalchemy import inspect, select, text

from auth_server.db import db
from auth_server.models import AccessToken, Client, RefreshToken, User
from tests.support import ALICE, DEMO_APP, NOTES_API


def _snapshot(app) -> dict:
    with app.app_context():
        names = inspect(db.engine).get_table_names()
        return {
            name: sorted(
                map(tuple, db.session.execute(text(f"SELECT * FROM {name}")).all()), key=repr
            )
            for name in names
        }


BAD_HEADERS = [
    {"Authorization": "Basic"},
    {"Authorization": "Basic !!!!"},
    {"Authorization": "Basic //79"},  # base64 of bytes that are not UTF-8
    {"Authorization": "Basic ZGVtby1hcHA="},  # no colon
    {"Authorization": "Bearer abc"},
    {"Authorization": "Basic " + "A" * 6000},
    {"Authorization": "Digest username=x"},
    {"Content-Type": "application/x-www-form-urlencoded; charset=latin-1"},
]


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/introspect", "/oauth/revoke"])
def test_malformed_requests_never_500_and_change_nothing(auth, path):
    tokens = auth.login()
    before = _snapshot(auth.app)
    url = auth.url + path
    attempts = [
        requests.post(
            url,
            data=b"grant_type=password&username=alice&password=wonderland",
            headers=headers,
            timeout=5,
        )
        for headers in BAD_HEADERS
    ]
    attempts += [
        requests.post(
            url,
            data=b"\xff\xfe=\xfd&token=%ZZ&grant_type=%",
            auth=DEMO_APP,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=5,
        ),
        requests.post(
            url,
            data="{not json",
            auth=DEMO_APP,
            headers={"Content-Type": "application/json"},
            timeout=5,
        ),
        requests.post(
            url,
            data="token=" + "x" * 100_000,
            auth=DEMO_APP,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=5,
        ),
        requests.post(
            url,
            data={
                "token": tokens["access_token"],
                "grant_type": "refresh_token",
                "refresh_token": tokens["access_token"],
            },
            auth=("demo-app\x00", DEMO_APP[1]),
            timeout=5,
        ),
        requests.put(url, data={"token": "x"}, auth=NOTES_API, timeout=5),
        requests.post(url, files={"token": ("t", b"x")}, auth=NOTES_API, timeout=5),
    ]
    for response in attempts:
        assert 400 <= response.status_code < 500, (response.status_code, response.text)
        assert response.headers["Content-Type"].startswith("application/json")
    assert _snapshot(auth.app) == before


def test_malformed_refresh_tokens_are_invalid_grant_and_change_nothing(auth):
    tokens = auth.login()
    before = _snapshot(auth.app)
    for garbage in ["x", "\u00e9" * 10, "a" * 5000, tokens["access_token"]]:
        response = auth.refresh(garbage)
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_grant"
    assert _snapshot(auth.app) == before


def test_oversized_request_line_and_headers_are_refused(auth):
    """A raw socket: a header far beyond sane limits must not crash the worker."""
    host, port = auth.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            b"POST /oauth/token HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n"
            b"Content-Length: 0\r\n\r\n"
        )
        status = sock.recv(100)
    assert status.startswith(b"HTTP/1.")
    assert not status.split()[1].startswith(b"5")
    assert requests.get(f"{auth.url}/healthz", timeout=5).status_code == 200


def test_secrets_are_stored_only_as_hashes(auth):
    """No password, client secret, access token or refresh token appears in the database."""
    tokens = auth.login()
    rotated = auth.refresh(tokens["refresh_token"]).json()
    dump = repr(_snapshot(auth.app))
    for secret in (
        ALICE[1],
        DEMO_APP[1],
        NOTES_API[1],
        tokens["access_token"],
        tokens["refresh_token"],
        rotated["access_token"],
        rotated["refresh_token"],
    ):
        assert secret not in dump
    with auth.app.app_context():
        assert db.session.scalar(
            select(User.password_hash).where(User.username == "alice")
        ).startswith("$argon2id$")
        rows = db.session.execute(select(Client.client_type, Client.secret_hash)).all()
        assert all(len(h) == 64 for kind, h in rows if kind == "confidential")
        assert {h for kind, h in rows if kind == "public"} == {""}  # public clients: no secret
        assert db.session.scalar(select(AccessToken.token_hash).limit(1))
        assert db.session.scalar(select(RefreshToken.token_hash).limit(1))


@pytest.mark.parametrize(
    "path", ["/oauth/token", "/oauth/introspect", "/oauth/revoke", "/account/password"]
)
@pytest.mark.parametrize("name", ["\u00c8j", 'a"b', "a\\b", "tab\there", "x" * 100])
def test_repeated_parameter_with_any_name_is_invalid_request(auth, path, name):
    """Found by the schemathesis run: a repeated parameter whose name RFC 6749 §5.2 does not
    allow in error_description (non-ASCII, quote, backslash, control) was a 500."""
    before = _snapshot(auth.app)
    response = requests.post(
        auth.url + path,
        data=[(name, "1"), (name, "2")],
        auth=NOTES_API if path == "/oauth/introspect" else DEMO_APP,
        timeout=5,
    )
    assert response.status_code == 400
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert body["error"] == "invalid_request"
    assert body["error_description"] == "A parameter is repeated."
    assert _snapshot(auth.app) == before
