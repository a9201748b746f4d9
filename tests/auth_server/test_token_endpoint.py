"""RFC 6749 §3.2, §4.3, §4.4, §5 and RFC 9068 at the token endpoint, over real HTTP."""

from __future__ import annotations

import base64
import json

import pytest
import requests
from joserfc import jwk, jwt

from tests.support import (
    ALICE,
    BOB,
    DEMO_APP,
    NOTES,
    OTHER_APP,
    REPORTS,
    REPORTS_API,
    SERVICE_APP,
    post_chunked,
    start_auth_server,
)


def _claims_and_header(token: str, jwks: dict) -> tuple[dict, dict]:
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    decoded = jwt.decode(token, jwk.import_key(key), algorithms=[key["alg"]])
    return decoded.claims, decoded.header


def _assert_oauth_error(response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    assert response.json()["error"] == error


def test_password_grant_returns_bearer_and_refresh_token_with_no_store(auth):
    """Steps 1-3: username + password give an access token and a refresh token, never cached."""
    response = auth.token(grant_type="password", username="alice", password="wonderland")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 300
    assert body["scope"] == "profile notes:read notes:write"
    assert len(base64.urlsafe_b64decode(body["refresh_token"] + "==")) >= 32


def test_access_token_is_an_rfc9068_jwt_signed_by_a_published_key(auth):
    """typ at+jwt, kid in the JWKS, and every claim RFC 9068 §2.2 requires."""
    body = auth.login()
    jwks = requests.get(f"{auth.url}/.well-known/jwks.json", timeout=5).json()
    claims, header = _claims_and_header(body["access_token"], jwks)
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "ES256"
    assert claims["iss"] == auth.url
    assert claims["aud"] == NOTES
    assert claims["client_id"] == "demo-app"
    assert claims["scope"] == "profile notes:read notes:write"
    assert claims["exp"] - claims["iat"] == 300
    assert claims["jti"] and claims["sub"] and claims["sub"] != "alice"


def test_client_secret_post_authenticates_too(auth):
    """RFC 6749 §2.3.1: credentials in the form body are accepted."""
    response = requests.post(
        f"{auth.url}/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": DEMO_APP[0],
            "client_secret": DEMO_APP[1],
        },
        timeout=5,
    )
    assert response.status_code == 200, response.text


def test_wrong_password_is_invalid_grant(auth):
    """RFC 6749 §5.2: bad resource-owner credentials are invalid_grant, 400."""
    response = auth.token(grant_type="password", username="alice", password="not-it-at-all")
    _assert_oauth_error(response, 400, "invalid_grant")


def test_unknown_user_gets_the_same_answer_as_a_wrong_password(auth):
    """No username oracle: same status, same body."""
    unknown = auth.token(grant_type="password", username="nobody", password="whatever12")
    wrong = auth.token(grant_type="password", username="alice", password="whatever12")
    assert unknown.status_code == wrong.status_code == 400
    assert unknown.json() == wrong.json()


def test_disabled_user_cannot_log_in(auth):
    """A disabled account is refused like bad credentials."""
    runner = auth.app.test_cli_runner()
    assert runner.invoke(args=["users", "disable", "alice"]).exit_code == 0
    response = auth.token(grant_type="password", username=ALICE[0], password=ALICE[1])
    _assert_oauth_error(response, 400, "invalid_grant")


def test_missing_password_is_invalid_request(auth):
    response = auth.token(grant_type="password", username="alice")
    _assert_oauth_error(response, 400, "invalid_request")


@pytest.mark.parametrize(
    "credentials",
    [("demo-app", "wrong-secret"), ("no-such-client", "x"), ("demo-app", "")],
    ids=["wrong-secret", "unknown-client", "empty-secret"],
)
def test_bad_client_credentials_get_401_with_basic_challenge(auth, credentials):
    """RFC 6749 §5.2: invalid_client after HTTP Basic is 401 with WWW-Authenticate: Basic."""
    response = auth.token(credentials, grant_type="client_credentials")
    _assert_oauth_error(response, 401, "invalid_client")
    assert response.headers["WWW-Authenticate"].startswith("Basic ")


def test_missing_client_authentication_is_invalid_client(auth):
    response = requests.post(
        f"{auth.url}/oauth/token", data={"grant_type": "client_credentials"}, timeout=5
    )
    _assert_oauth_error(response, 401, "invalid_client")


def test_two_client_authentication_methods_are_refused(auth):
    """RFC 6749 §2.3: a client MUST NOT use more than one authentication method."""
    response = auth.token(grant_type="client_credentials", client_secret=DEMO_APP[1])
    _assert_oauth_error(response, 400, "invalid_request")


def test_client_credentials_in_the_query_string_are_ignored(auth):
    """RFC 6749 §2.3.1: credentials MUST NOT travel in the request URI."""
    response = requests.post(
        f"{auth.url}/oauth/token?client_id={DEMO_APP[0]}&client_secret={DEMO_APP[1]}",
        data={"grant_type": "client_credentials"},
        timeout=5,
    )
    _assert_oauth_error(response, 401, "invalid_client")


@pytest.mark.parametrize("form", [{}, {"grant_type": ""}], ids=["missing", "empty"])
def test_missing_grant_type_is_invalid_request(auth, form):
    """RFC 6749 §5.2: a missing required parameter is invalid_request."""
    response = requests.post(
        f"{auth.url}/oauth/token", data={"scope": "profile", **form}, auth=DEMO_APP, timeout=5
    )
    _assert_oauth_error(response, 400, "invalid_request")


def test_unsupported_grant_type(auth):
    response = auth.token(grant_type="urn:ietf:params:oauth:grant-type:device_code")
    _assert_oauth_error(response, 400, "unsupported_grant_type")


def test_password_grant_turned_off_is_unsupported_and_not_advertised(serve, make_database_url):
    """RFC 9700 §2.4: PASSWORD_GRANT_ENABLED=0 removes the grant; the other grants stay."""
    auth = start_auth_server(serve, make_database_url("auth"), password_grant_enabled=False)
    response = auth.token(grant_type="password", username=ALICE[0], password=ALICE[1])
    _assert_oauth_error(response, 400, "unsupported_grant_type")
    assert auth.token(grant_type="client_credentials").status_code == 200
    metadata = requests.get(f"{auth.url}/.well-known/oauth-authorization-server", timeout=5)
    assert set(metadata.json()["grant_types_supported"]) == {
        "authorization_code",
        "client_credentials",
        "refresh_token",
    }


def test_grant_type_not_allowed_for_client_is_unauthorized_client(auth):
    response = auth.token(
        SERVICE_APP, grant_type="password", username="alice", password="wonderland"
    )
    _assert_oauth_error(response, 400, "unauthorized_client")


def test_client_credentials_token_has_client_as_subject_and_no_refresh_token(auth):
    """RFC 6749 §4.4.3: no refresh token; RFC 9068 §2.2: sub is the client."""
    response = auth.token(SERVICE_APP, grant_type="client_credentials")
    assert response.status_code == 200
    body = response.json()
    assert "refresh_token" not in body
    assert body["scope"] == "notes:read notes:write"
    introspected = auth.introspect(body["access_token"]).json()
    assert introspected["sub"] == "service-app"
    assert "username" not in introspected


def test_scope_parameter_narrows_the_granted_scope(auth):
    body = auth.login(scope="notes:read")
    assert body["scope"] == "notes:read"
    assert auth.introspect(body["access_token"]).json()["scope"] == "notes:read"


def test_scope_beyond_the_client_is_invalid_scope(auth):
    response = auth.token(
        grant_type="password", username="alice", password="wonderland", scope="notes:read admin"
    )
    _assert_oauth_error(response, 400, "invalid_scope")


def test_malformed_scope_is_invalid_scope(auth):
    response = auth.token(grant_type="client_credentials", scope='notes:read "quoted"')
    _assert_oauth_error(response, 400, "invalid_scope")


def test_user_token_never_carries_more_than_the_user_may_delegate(auth):
    """bob may delegate only profile and notes:read, whatever the client may ask."""
    body = auth.login(BOB)
    assert body["scope"] == "profile notes:read"
    response = auth.token(
        grant_type="password", username=BOB[0], password=BOB[1], scope="notes:write"
    )
    _assert_oauth_error(response, 400, "invalid_scope")
    # RFC 6749 §5.2: it says whose limit it is, the user's, not the client's
    assert response.json()["error_description"] == "The user may not grant the scope notes:write."
    beyond_client = auth.token(
        grant_type="password", username=BOB[0], password=BOB[1], scope="reports:read"
    )
    _assert_oauth_error(beyond_client, 400, "invalid_scope")
    assert "client" in beyond_client.json()["error_description"]


def test_resource_parameter_selects_the_audience(auth):
    """RFC 8707 §2: the token is restricted to the resource asked for."""
    both = auth.login(client=OTHER_APP)
    assert set(auth.introspect(both["access_token"]).json()["aud"]) == {NOTES, REPORTS}
    one = auth.login(client=OTHER_APP, resource=REPORTS)
    assert auth.introspect(one["access_token"], client=REPORTS_API).json()["aud"] == REPORTS


def test_resource_not_allowed_for_client_is_invalid_target(auth):
    response = auth.token(grant_type="client_credentials", resource=REPORTS)
    _assert_oauth_error(response, 400, "invalid_target")


def test_relative_resource_is_invalid_target(auth):
    response = auth.token(grant_type="client_credentials", resource="/notes")
    _assert_oauth_error(response, 400, "invalid_target")


def test_unparsable_resource_is_invalid_target_not_500(auth):
    """urlsplit raises on a malformed IPv6 host: still the client's error."""
    response = auth.token(grant_type="client_credentials", resource="http://[::1")
    _assert_oauth_error(response, 400, "invalid_target")


def test_repeated_parameter_is_invalid_request(auth):
    """RFC 6749 §3.2: request parameters MUST NOT be included more than once."""
    response = auth.token(grant_type="client_credentials", scope=["notes:read", "profile"])
    _assert_oauth_error(response, 400, "invalid_request")


def test_json_body_is_invalid_request(auth):
    """RFC 6749 Appendix B: the token endpoint takes application/x-www-form-urlencoded only."""
    response = requests.post(
        f"{auth.url}/oauth/token",
        json={"grant_type": "client_credentials"},
        auth=DEMO_APP,
        timeout=5,
    )
    _assert_oauth_error(response, 400, "invalid_request")


def test_get_on_token_endpoint_is_405_json(auth):
    response = requests.get(f"{auth.url}/oauth/token", timeout=5)
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]
    assert response.json()["error"] == "method_not_allowed"


def test_oversized_body_is_413_json(auth):
    response = auth.token(grant_type="client_credentials", padding="x" * 70_000)
    assert response.status_code == 413
    assert response.json()["error"] == "invalid_request"


def _chunked_token_request(auth, form: str):
    basic = base64.b64encode(":".join(DEMO_APP).encode()).decode()
    headers = {
        "Authorization": f"Basic {basic}",
        "Content-Type": "application/x-www-form-urlencoded",
    }
    return post_chunked(auth.url, "/oauth/token", form.encode(), headers)


def test_chunked_body_over_the_limit_is_413_not_cut(serve, make_database_url):
    """A chunked form (no Content-Length) over MAX_REQUEST_BYTES is the same RFC 6749 JSON
    413 with no-store as with Content-Length. Werkzeug alone would parse the first 2048 bytes
    (here a complete client_credentials request) and silently drop the rest."""
    auth = start_auth_server(serve, make_database_url("auth"), max_request_bytes=2048)
    form = "grant_type=client_credentials&padding=" + "x" * 2000 + "&scope=profile"
    response = _chunked_token_request(auth, form)
    assert response.status == 413
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"].startswith("application/json")
    assert json.loads(response.body) == {
        "error": "invalid_request",
        "error_description": "The request body is too large.",
    }


def test_chunked_body_within_the_limit_is_read_whole(serve, make_database_url):
    """A chunked form of exactly MAX_REQUEST_BYTES is read to its last parameter."""
    auth = start_auth_server(serve, make_database_url("auth"), max_request_bytes=2048)
    form = "grant_type=client_credentials&padding=" + "x" * 1996 + "&scope=profile"
    assert len(form) == 2048
    response = _chunked_token_request(auth, form)
    assert response.status == 200, response.body
    assert json.loads(response.body)["scope"] == "profile"


@pytest.mark.parametrize("incoming", ["a" * 65, "a" * 8000, "a b", "<x>", "ä"])
def test_unsafe_request_id_is_replaced_at_the_authorization_server(auth, incoming):
    """The AS shares the rule: only 1-64 characters of [A-Za-z0-9._-] are taken from a caller;
    anything else is replaced by a fresh id, never echoed."""
    response = auth.http.post(
        f"{auth.url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=DEMO_APP,
        headers={"X-Request-ID": incoming.encode()},
        timeout=10,
    )
    assert response.status_code == 200
    generated = response.headers["X-Request-ID"]
    assert generated != incoming and len(generated) == 32
    int(generated, 16)
    safe = auth.http.get(f"{auth.url}/healthz", headers={"X-Request-ID": "a" * 64}, timeout=10)
    assert safe.headers["X-Request-ID"] == "a" * 64
