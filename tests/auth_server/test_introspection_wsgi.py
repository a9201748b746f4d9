"""The introspection answered below Flask (auth_server/introspection_wsgi.py) is the one Flask
answers, byte for byte, and everything it does not answer reaches Flask unchanged."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from werkzeug.test import EnvironBuilder, run_wsgi_app

from auth_server.introspection_wsgi import FAST_PATH, IntrospectionFastPath
from shared.protocol.basic_auth import basic_credentials_header
from tests.dpop_support import DPoPKey
from tests.fast_path_support import Paths
from tests.support import (
    ALICE,
    DEMO_APP,
    NOTES_API,
    REPORTS_API,
    SERVICE_APP,
    SPA_APP,
    FakeClock,
    start_auth_server,
    start_resource_server,
)

FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def auth(serve, make_database_url, clock):
    return start_auth_server(serve, make_database_url("auth"), clock=clock)


def paths_of(app) -> Paths:
    return Paths(app, FAST_PATH, IntrospectionFastPath)


@pytest.fixture
def paths(auth):
    """(the app with its fast path, the counter of what reaches Flask)."""
    chain = paths_of(auth.app)
    return chain, chain.flask


def call(app, *, body="", content_type=FORM, method="POST", headers=None):
    environ = EnvironBuilder(
        path="/oauth/introspect",
        method=method,
        data=body.encode() if isinstance(body, str) else body,
        content_type=content_type,
        headers={"X-Request-ID": "rid-1", **(headers or {})},
    ).get_environ()
    iterable, status, response_headers = run_wsgi_app(app, environ)
    return status, list(response_headers.items()), b"".join(iterable)


def basic(client=NOTES_API):
    return {"Authorization": basic_credentials_header(*client)}


def shapes(tokens):
    access, refresh, service = tokens["access"], tokens["refresh"], tokens["service"]
    return {
        # The common shape: answered below Flask.
        "active": dict(body=f"token={access}", headers=basic()),
        "active with hint": dict(
            body=f"token={access}&token_type_hint=access_token", headers=basic()
        ),
        "hint first": dict(body=f"token_type_hint=refresh_token&token={access}", headers=basic()),
        "unknown token": dict(body="token=never-issued", headers=basic()),
        "refresh token": dict(body=f"token={refresh}", headers=basic()),
        "client_credentials token": dict(body=f"token={service}", headers=basic()),
        "another audience": dict(body=f"token={access}", headers=basic(REPORTS_API)),
        "percent-encoded": dict(body="token=" + quote(access, safe=""), headers=basic()),
        # Flask's: errors, other shapes.
        "wrong secret": dict(body=f"token={access}", headers=basic((NOTES_API[0], "nope"))),
        "unknown client": dict(body=f"token={access}", headers=basic(("ghost", "x"))),
        "no credentials": dict(body=f"token={access}"),
        "client that may not introspect": dict(body=f"token={access}", headers=basic(DEMO_APP)),
        "public client": dict(
            body=f"token={access}", headers={"Authorization": f"Basic {SPA_APP}:"}
        ),
        "client_secret_post": dict(
            body=f"token={access}&client_id={NOTES_API[0]}&client_secret={NOTES_API[1]}"
        ),
        "both methods": dict(body=f"token={access}&client_secret=x", headers=basic()),
        "token twice": dict(body=f"token={access}&token={access}", headers=basic()),
        "empty token": dict(body="token=", headers=basic()),
        "no token": dict(body="token_type_hint=access_token", headers=basic()),
        "extra parameter": dict(body=f"token={access}&x=1", headers=basic()),
        "JSON body": dict(
            body=f'{{"token": "{access}"}}', content_type="application/json", headers=basic()
        ),
        "charset parameter": dict(
            body=f"token={access}", content_type=FORM + "; charset=utf-8", headers=basic()
        ),
        "GET": dict(method="GET", headers=basic()),
        "oversized token": dict(body="token=" + "a" * 9000, headers=basic()),
        "bad percent-encoding": dict(body="token=%ff%fe", headers=basic()),
        "Bearer authorization": dict(
            body=f"token={access}", headers={"Authorization": f"Bearer {access}"}
        ),
    }


COMMON = {
    "active",
    "active with hint",
    "hint first",
    "unknown token",
    "refresh token",
    "client_credentials token",
    "another audience",
    "percent-encoded",
}


@pytest.fixture
def tokens(auth):
    login = auth.login()
    return {
        "access": login["access_token"],
        "refresh": login["refresh_token"],
        "service": auth.token(SERVICE_APP, grant_type="client_credentials").json()["access_token"],
    }


def test_every_shape_gets_the_answer_flask_gives(auth, paths, tokens):
    fast, flask_alone = paths
    for name, request in shapes(tokens).items():
        answered_by_flask = flask_alone.calls
        ours = call(fast, **request)
        through_fast_path = flask_alone.calls == answered_by_flask
        assert through_fast_path == (name in COMMON), name
        assert ours == call(fast.flask_alone, **request), name
        assert ("X-Request-ID", "rid-1") in ours[1], name


def test_a_generated_request_id_is_one_per_request(paths, tokens):
    fast, _ = paths
    environ = EnvironBuilder(
        path="/oauth/introspect",
        method="POST",
        data=f"token={tokens['access']}",
        content_type=FORM,
        headers=basic(),
    ).get_environ()
    ids = {dict(run_wsgi_app(fast, dict(environ))[2])["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3
    assert all(len(value) == 32 for value in ids)


def test_the_fast_answer_is_counted_like_flasks(auth, paths, tokens):
    fast, _ = paths
    registry = auth.app.extensions["tessera"].metrics.registry

    def count(name, **labels):
        return registry.get_sample_value(name, labels) or 0

    requests_before = count(
        "tessera_http_requests_total", endpoint="/oauth/introspect", method="POST", status="200"
    )
    active_before = count("tessera_introspections_total", result="active")
    call(fast, body=f"token={tokens['access']}", headers=basic())

    assert (
        count(
            "tessera_http_requests_total", endpoint="/oauth/introspect", method="POST", status="200"
        )
        == requests_before + 1
    )
    assert count("tessera_introspections_total", result="active") == active_before + 1


def test_a_login_due_an_activity_write_goes_through_flask(auth, paths, tokens, clock):
    """Sliding expiration writes; the fast path never does, so Flask answers that one."""
    fast, flask_alone = paths
    before = flask_alone.calls  # the logins of `tokens`
    call(fast, body=f"token={tokens['access']}", headers=basic())
    assert flask_alone.calls == before

    clock.advance(auth.settings.refresh_activity_interval + 1)
    status, _, body = call(fast, body=f"token={tokens['access']}", headers=basic())
    assert status.startswith("200") and b'"active": true' in body
    assert flask_alone.calls == before + 1

    call(fast, body=f"token={tokens['access']}", headers=basic())
    assert flask_alone.calls == before + 1  # written: the next one is the fast path's again


@pytest.mark.parametrize("dpop", [False, True], ids=["bearer", "dpop"])
def test_the_resource_servers_introspections_take_the_fast_path(
    serve, make_database_url, auth, paths, dpop
):
    """What the notes API sends is the common shape: its protected requests never reach
    Flask at the authorization server."""

    _, flask_alone = paths
    notes = start_resource_server(serve, make_database_url("notes"), auth)
    if dpop:
        key = DPoPKey()
        login = auth.http.post(
            f"{auth.url}/oauth/token",
            data={"grant_type": "password", "username": ALICE[0], "password": ALICE[1]},
            auth=DEMO_APP,
            headers={"DPoP": key.proof("POST", f"{auth.url}/oauth/token")},
            timeout=10,
        )
        assert login.json()["token_type"] == "DPoP", login.text
        token = login.json()["access_token"]

        def get():
            return notes.get(
                "/api/me",
                headers={
                    "Authorization": f"DPoP {token}",
                    "DPoP": key.proof("GET", f"{notes.url}/api/me", access_token=token),
                },
            )
    else:
        token = auth.login()["access_token"]

        def get():
            return notes.get("/api/me", token)

    before = flask_alone.calls
    for _ in range(5):
        assert get().status_code == 200
    assert flask_alone.calls == before
