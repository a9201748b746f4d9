"""TokenGuard and require_token on a bare Flask API (no database), as a third party uses them.

A stand-in introspection endpoint (tests/resource_server/fake_as.py) is used because these
tests exercise the guard's handling of AS behaviours the real AS cannot be made to produce on
demand (outages, tokens with a foreign issuer). The real end-to-end tests live in
tests/end_to_end/.
"""

from __future__ import annotations

import pytest
from flask import Flask, g

from shared.guard.introspection import IntrospectionClient
from shared.guard.protect import EXTENSION_KEY, TokenGuard, current_token, require_token
from shared.service.request_id import current_request_id
from tests.resource_server.fake_as import AUDIENCE


@pytest.fixture
def make_api(fake_as):
    clients: list[IntrospectionClient] = []

    def factory(**guard_options) -> Flask:
        client = IntrospectionClient(
            f"{fake_as.url}/oauth/introspect",
            fake_as.client_id,
            fake_as.client_secret,
            connect_timeout=0.5,
            read_timeout=0.3,
        )
        clients.append(client)
        app = Flask(__name__)
        options = {"audience": AUDIENCE, "realm": "things", "expected_issuer": fake_as.url}
        guard = TokenGuard(introspection_client=client, **{**options, **guard_options})
        guard.init_app(app)

        @app.get("/things")
        @require_token("things:read")
        def things():
            assert g.token is current_token()
            return {"sub": current_token().sub, "request_id": current_request_id()}

        @app.get("/open")
        def open_view():
            return {"ok": True}

        return app

    yield factory
    for client in clients:
        client.close()


def test_guard_registers_itself_as_extension(make_api):
    """The guard is found on app.extensions["tessera_token_guard"]."""
    app = make_api()
    assert isinstance(app.extensions[EXTENSION_KEY], TokenGuard)
    assert EXTENSION_KEY == "tessera_token_guard"


def test_valid_token_reaches_view_with_current_token(fake_as, make_api):
    """The view runs with the verified token on g.token / current_token()."""
    token = fake_as.issue("things:read")
    response = make_api().test_client().get("/things", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json["sub"] == "alice-subject"


def test_missing_token_gets_bare_challenge_in_guard_realm(make_api):
    """The challenge uses the realm given to the guard."""
    response = make_api().test_client().get("/things")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="things"'


def test_other_issuer_is_invalid_token(fake_as, make_api):
    """An `iss` other than expected_issuer is invalid_token."""
    token = fake_as.issue("things:read", iss="https://evil.example")
    response = make_api().test_client().get("/things", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_other_audience_is_invalid_token_but_missing_scope_is_insufficient_scope(fake_as, make_api):
    """RFC 9068 §4: aud without ours is 401 invalid_token; RFC 6750 §3.1: our aud without the
    scope is 403 insufficient_scope naming it."""
    client = make_api().test_client()
    foreign = fake_as.issue("things:read", aud="urn:other")
    response = client.get("/things", headers={"Authorization": f"Bearer {foreign}"})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == (
        'Bearer realm="things", error="invalid_token", '
        'error_description="The access token is not meant for this resource"'
    )
    unscoped = fake_as.issue("other:scope")
    response = client.get("/things", headers={"Authorization": f"Bearer {unscoped}"})
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    assert response.headers["WWW-Authenticate"].endswith('scope="things:read"')


def test_issuer_not_checked_when_not_configured(fake_as, make_api):
    """Without expected_issuer any issuer is accepted."""
    token = fake_as.issue("things:read", iss="https://other.example")
    app = make_api(expected_issuer=None)
    response = app.test_client().get("/things", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


def test_expiry_uses_guard_clock(fake_as, make_api):
    """A token the AS still calls active but whose exp has passed is invalid_token."""
    token = fake_as.issue("things:read", exp=1_000)
    app = make_api(clock=lambda: 1_000.0)
    response = app.test_client().get("/things", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert "expired" in response.json["error_description"]


def test_outage_gets_503_with_configured_retry_after(fake_as, make_api):
    """IntrospectionUnavailable becomes 503 temporarily_unavailable with Retry-After."""
    fake_as.fail_with(502)
    app = make_api(retry_after=11)
    response = app.test_client().get("/things", headers={"Authorization": "Bearer tok"})
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "11"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.json["error"] == "temporarily_unavailable"


def test_request_id_is_forwarded_and_echoed(fake_as, make_api):
    """A safe X-Request-ID goes to the AS, becomes current_request_id() and comes back."""
    token = fake_as.issue("things:read")
    headers = {"Authorization": f"Bearer {token}", "X-Request-ID": "abc.DEF_1-2"}
    response = make_api().test_client().get("/things", headers=headers)
    assert response.headers["X-Request-ID"] == "abc.DEF_1-2"
    assert response.json["request_id"] == "abc.DEF_1-2"
    assert fake_as.calls[-1]["headers"]["X-Request-Id"] == "abc.DEF_1-2"


@pytest.mark.parametrize("incoming", ["", "has space", "a" * 65, "semi;colon", "ünï"])
def test_unsafe_request_id_is_replaced_by_uuid(fake_as, make_api, incoming):
    """An X-Request-ID outside [A-Za-z0-9._-]{1,64} is replaced by a fresh uuid4 hex."""
    token = fake_as.issue("things:read")
    headers = {"Authorization": f"Bearer {token}", "X-Request-ID": incoming}
    response = make_api().test_client().get("/things", headers=headers)
    generated = response.headers["X-Request-ID"]
    assert generated != incoming and len(generated) == 32
    int(generated, 16)
    assert fake_as.calls[-1]["headers"]["X-Request-Id"] == generated


def test_request_id_is_echoed_on_unprotected_views_too(make_api):
    """Every response carries the request id, not only guarded ones."""
    response = make_api().test_client().get("/open", headers={"X-Request-ID": "r-1"})
    assert response.headers["X-Request-ID"] == "r-1"


def test_require_token_without_guard_is_a_clear_error():
    """Using require_token on an app without TokenGuard fails loudly, not with a KeyError."""
    app = Flask(__name__)

    @app.get("/x")
    @require_token()
    def x():
        return "x"

    app.testing = True
    with pytest.raises(RuntimeError, match="TokenGuard"):
        app.test_client().get("/x")


def test_current_token_outside_guarded_view_is_an_error():
    """current_token() without a verified token raises instead of returning None."""
    with Flask(__name__).test_request_context("/"), pytest.raises(RuntimeError):
        current_token()


def test_invalid_scope_name_is_refused_at_decoration():
    """A scope that could not appear in scope="..." is a programming error, caught early."""
    with pytest.raises(ValueError):
        require_token('bad"scope')


def test_invalid_realm_is_refused():
    """A realm with a double quote would break the challenge header."""
    client = IntrospectionClient("http://127.0.0.1:9/x", "a", "b")
    with pytest.raises(ValueError):
        TokenGuard(introspection_client=client, audience="a", realm='a"b')
    client.close()
