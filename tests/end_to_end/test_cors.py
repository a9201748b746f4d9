"""CORS for browser apps: the token and revocation endpoints allow exactly the origins of public
clients' redirect URIs; the notes API allows CORS_ALLOWED_ORIGINS (none by default). Never
credentials, never `*`."""

from __future__ import annotations

import pytest
import requests

from resource_server.settings import ResourceSettings
from shared.service.cors import origin_of, parse_origins
from tests.support import (
    SPA_APP,
    Browser,
    code_request,
    pkce_pair,
    query_of,
    start_resource_server,
)

SPA_ORIGIN = "https://spa.example.com"  # the origin of SPA_REDIRECT
LOOPBACK_SPA_ORIGIN = "http://127.0.0.1:8002"  # of SPA_LOOPBACK_REDIRECT
WEB_APP_ORIGIN = "https://web.example.com"  # a confidential client's redirect URI: not allowed
APP_ORIGIN = "https://notes-app.example.com"


def preflight(url: str, origin: str, method="POST", headers: str | None = None):
    asked = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        asked["Access-Control-Request-Headers"] = headers
    return requests.options(url, headers=asked, timeout=10)


def assert_allowed(response, origin: str) -> None:
    assert response.headers["Access-Control-Allow-Origin"] == origin
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert "Origin" in response.headers["Vary"]


def assert_refused(response) -> None:
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Origin" in response.headers["Vary"]


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/revoke"])
@pytest.mark.parametrize("origin", [SPA_ORIGIN, LOOPBACK_SPA_ORIGIN])
def test_token_and_revocation_preflights_allow_public_clients_origins(auth, path, origin):
    response = preflight(auth.url + path, origin, headers="content-type")
    assert response.status_code == 204
    assert_allowed(response, origin)
    assert response.headers["Access-Control-Allow-Methods"] == "POST"
    assert response.headers["Access-Control-Allow-Headers"].lower() == "content-type"
    assert int(response.headers["Access-Control-Max-Age"]) > 0


@pytest.mark.parametrize(
    "origin,method,headers",
    [
        (WEB_APP_ORIGIN, "POST", None),  # a confidential client's redirect URI's origin
        ("https://evil.example", "POST", None),
        ("null", "POST", None),
        ("https://spa.example.com:8443", "POST", None),  # another port is another origin
        ("http://spa.example.com", "POST", None),  # another scheme too
        (SPA_ORIGIN, "DELETE", None),
        (SPA_ORIGIN, "POST", "authorization"),
    ],
    ids=["confidential", "foreign", "null", "port", "scheme", "method", "header"],
)
def test_other_origins_methods_and_headers_are_refused_at_preflight(auth, origin, method, headers):
    response = preflight(auth.url + "/oauth/token", origin, method, headers)
    assert response.status_code == 403
    assert_refused(response)


def test_a_public_clients_code_exchange_from_its_origin_carries_the_allow_origin(auth):
    verifier, challenge = pkce_pair()
    redirected = Browser(auth).login(**code_request(challenge=challenge))
    code = query_of(redirected.headers["Location"])["code"]
    response = requests.post(
        f"{auth.url}/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": "https://spa.example.com/callback",
            "code_verifier": verifier,
            "client_id": SPA_APP,
        },
        headers={"Origin": SPA_ORIGIN},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert_allowed(response, SPA_ORIGIN)
    revoked = requests.post(
        f"{auth.url}/oauth/revoke",
        data={"token": response.json()["refresh_token"], "client_id": SPA_APP},
        headers={"Origin": SPA_ORIGIN},
        timeout=10,
    )
    assert revoked.status_code == 200
    assert_allowed(revoked, SPA_ORIGIN)
    # An error answer is readable by the app too (RFC 6749 §5.2 body).
    refused = requests.post(
        f"{auth.url}/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": "nope", "client_id": SPA_APP},
        headers={"Origin": SPA_ORIGIN},
        timeout=10,
    )
    assert refused.status_code == 400
    assert_allowed(refused, SPA_ORIGIN)


def test_a_foreign_origin_gets_no_allow_origin_and_other_endpoints_no_cors(auth):
    response = auth.token(grant_type="client_credentials")
    assert "Access-Control-Allow-Origin" not in response.headers  # no Origin, no CORS
    foreign = requests.post(
        f"{auth.url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=("demo-app", "demo-app-secret"),
        headers={"Origin": "https://evil.example"},
        timeout=10,
    )
    assert_refused(foreign)
    introspection = preflight(auth.url + "/oauth/introspect", SPA_ORIGIN)
    assert "Access-Control-Allow-Origin" not in introspection.headers
    account = preflight(auth.url + "/account/sign-in", SPA_ORIGIN)
    assert "Access-Control-Allow-Origin" not in account.headers


def test_the_notes_api_allows_no_origin_by_default(notes_api, auth):
    token = auth.login()["access_token"]
    response = preflight(notes_api.url + "/api/notes", APP_ORIGIN, "GET", "authorization")
    assert response.status_code == 403
    assert_refused(response)
    listed = notes_api.get("/api/notes", token, headers={"Origin": APP_ORIGIN})
    assert listed.status_code == 200
    assert_refused(listed)


def test_the_notes_api_allows_its_configured_origins(serve, make_database_url, auth):
    api = start_resource_server(
        serve, make_database_url("notes"), auth, cors_allowed_origins=APP_ORIGIN
    )
    token = auth.login()["access_token"]
    response = preflight(api.url + "/api/notes", APP_ORIGIN, "POST", "authorization, content-type")
    assert response.status_code == 204
    assert_allowed(response, APP_ORIGIN)
    assert "Authorization" in response.headers["Access-Control-Allow-Headers"].title()
    listed = api.get("/api/notes", token, headers={"Origin": APP_ORIGIN})
    assert listed.status_code == 200
    assert_allowed(listed, APP_ORIGIN)
    # A refused token's challenge is readable from the page.
    refused = api.get("/api/notes", "not-a-token", headers={"Origin": APP_ORIGIN})
    assert refused.status_code == 401
    assert_allowed(refused, APP_ORIGIN)
    assert "WWW-Authenticate" in refused.headers["Access-Control-Expose-Headers"]
    other = preflight(api.url + "/api/notes", "https://evil.example", "GET")
    assert other.status_code == 403
    assert_refused(other)
    health = preflight(api.url + "/health", APP_ORIGIN, "GET")
    assert "Access-Control-Allow-Origin" not in health.headers


def test_origins_are_serialized_as_browsers_send_them():
    assert origin_of("https://spa.example.com/callback?x=1") == "https://spa.example.com"
    assert origin_of("HTTPS://Spa.Example.COM:443/cb") == "https://spa.example.com"
    assert origin_of("http://127.0.0.1:8002/cb") == "http://127.0.0.1:8002"
    assert origin_of("http://[::1]:8080/cb") == "http://[::1]:8080"
    assert origin_of("com.example.app:/callback") is None


@pytest.mark.parametrize("value", ["*", "https://a.example/path", "null", "a.example"])
def test_cors_allowed_origins_takes_origins_only(value):
    with pytest.raises(ValueError):
        parse_origins(value)
    with pytest.raises(ValueError, match="CORS_ALLOWED_ORIGINS"):
        ResourceSettings(
            resource_client_id="rs", resource_client_secret="s", cors_allowed_origins=value
        )
