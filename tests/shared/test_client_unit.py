"""shared/client/oauth.py in isolation: header parsing, token responses, URLs, and the answers a
real Tessera never gives (HTML errors, 503 on refresh) from a small stand-in server over HTTP."""

from __future__ import annotations

import json

import pytest
import requests
from flask import Flask, Response, request

from shared.client import (
    DiscoveryError,
    MemoryTokenStore,
    OAuthClient,
    OAuthClientError,
    ProtocolError,
    TokenEndpointError,
    Tokens,
    is_invalid_token,
    parse_www_authenticate,
)
from shared.client.oauth import _issuer_and_metadata_url


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('Bearer realm="tessera"', [("bearer", {"realm": "tessera"})]),
        (
            'Bearer realm="t", error="invalid_token", error_description="The access token expired"',
            [
                (
                    "bearer",
                    {
                        "realm": "t",
                        "error": "invalid_token",
                        "error_description": "The access token expired",
                    },
                )
            ],
        ),
        ("bearer ERROR=invalid_token", [("bearer", {"error": "invalid_token"})]),
        (
            'Basic realm="a, b", Bearer error="invalid_token"',
            [("basic", {"realm": "a, b"}), ("bearer", {"error": "invalid_token"})],
        ),
        ('Bearer realm="say \\"hi\\""', [("bearer", {"realm": 'say "hi"'})]),
        ("Negotiate YWJj==, Bearer", [("negotiate", {"": "YWJj=="}), ("bearer", {})]),
        ('Bearer error="a", error="invalid_token"', [("bearer", {"error": "a"})]),
        ("", []),
        ('"junk', []),
    ],
)
def test_www_authenticate_is_parsed_per_rfc_7235(header, expected):
    """Schemes and names case-insensitive, quoted values unescaped, several challenges."""
    assert parse_www_authenticate(header) == expected


def _response(status: int, challenge: str | None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    if challenge is not None:
        response.headers["WWW-Authenticate"] = challenge
    return response


@pytest.mark.parametrize(
    ("status", "challenge", "refresh"),
    [
        (401, 'Bearer realm="t", error="invalid_token"', True),
        (401, 'Basic realm="x", Bearer error="invalid_token"', True),
        (401, 'Bearer realm="t"', False),
        (401, None, False),
        (401, 'Basic error="invalid_token"', False),
        (401, 'Bearer error="invalid_request"', False),
        (403, 'Bearer error="insufficient_scope", scope="notes:write"', False),
        (403, 'Bearer error="invalid_token"', False),
    ],
)
def test_only_401_bearer_invalid_token_means_refresh(status, challenge, refresh):
    """RFC 6750 §3.1: a bare 401, another scheme or a 403 never triggers a refresh."""
    assert is_invalid_token(_response(status, challenge)) is refresh


def test_tokens_from_response_and_repr_hides_the_tokens():
    """expires_at is relative to the receive time; repr shows fingerprints only."""
    body = {"access_token": "a" * 40, "token_type": "bearer", "expires_in": 300, "scope": "x"}
    tokens = Tokens.from_response({**body, "refresh_token": "r" * 43}, now=1000.0)
    assert tokens.expires_at == 1300.0 and tokens.scope == "x"
    assert not tokens.expired(1297.0, skew=2) and tokens.expired(1298.0, skew=2)
    assert "a" * 40 not in repr(tokens) and "r" * 43 not in repr(tokens)
    assert "sha256:" in repr(tokens)
    assert Tokens.from_dict(json.loads(json.dumps(tokens.to_dict()))) == tokens


@pytest.mark.parametrize(
    "body",
    [
        {"token_type": "Bearer"},
        {"access_token": "x", "token_type": "mac"},
        {"access_token": "x"},
        {"access_token": "x", "token_type": "Bearer", "expires_in": "300"},
        {"access_token": "x", "token_type": "Bearer", "expires_in": True},
        {"access_token": "x", "token_type": "Bearer", "refresh_token": 5},
        {"access_token": "x", "token_type": "Bearer", "expires_in": float("inf")},
        {"access_token": "x", "token_type": "Bearer", "expires_in": float("nan")},
        {"access_token": "x", "token_type": "Bearer", "expires_in": 10**400},
    ],
)
def test_malformed_token_responses_are_refused(body):
    """RFC 6749 §5.1 and §7.1: a token we cannot understand is never used."""
    with pytest.raises(ProtocolError):
        Tokens.from_response(body, now=0.0)


@pytest.mark.parametrize(
    ("given", "issuer", "metadata_url"),
    [
        (
            "https://as.example",
            "https://as.example",
            "https://as.example/.well-known/oauth-authorization-server",
        ),
        (
            "https://as.example/tenant",
            "https://as.example/tenant",
            "https://as.example/.well-known/oauth-authorization-server/tenant",
        ),
        (
            "https://as.example/.well-known/oauth-authorization-server",
            "https://as.example",
            "https://as.example/.well-known/oauth-authorization-server",
        ),
        (
            "https://as.example/tenant/.well-known/oauth-authorization-server",
            "https://as.example/tenant",
            "https://as.example/tenant/.well-known/oauth-authorization-server",
        ),
    ],
)
def test_issuer_and_metadata_url_follow_rfc_8414(given, issuer, metadata_url):
    """§3.1: the well-known string goes between host and path; either form may be given."""
    assert _issuer_and_metadata_url(given) == (issuer, metadata_url)


def test_credentials_never_go_over_plain_http_except_to_loopback():
    """RFC 6749 §3.2: TLS, except on loopback or when explicitly allowed."""
    with pytest.raises(OAuthClientError, match="https"):
        OAuthClient("http://as.example", "app", "secret")
    OAuthClient("http://as.example", "app", "secret", insecure_transport=True)
    OAuthClient("http://localhost:8000", "app", "secret")


class StandIn:
    """An authorization server and API that answer what the test sets, on a real port."""

    def __init__(self, serve) -> None:
        self.token_answer: tuple[int, str, str] = (200, "{}", "application/json")
        self.forms: list[dict] = []
        app = Flask("stand-in")
        app.add_url_rule("/.well-known/oauth-authorization-server", view_func=self.metadata)
        app.add_url_rule("/token", view_func=self.token, methods=["POST"])
        app.add_url_rule("/api", view_func=self.api)
        self.server = serve(app)
        self.url = self.server.url

    def metadata(self):
        return {"issuer": self.url, "token_endpoint": f"{self.url}/token"}

    def token(self):
        self.forms.append(request.form.to_dict())
        status, body, content_type = self.token_answer
        return Response(body, status, content_type=content_type)

    def api(self):
        if request.headers.get("Authorization") == "Bearer fresh":
            return {"ok": True}
        return Response("{}", 401, {"WWW-Authenticate": 'Bearer error="invalid_token"'})


@pytest.fixture
def stand_in(serve) -> StandIn:
    return StandIn(serve)


def test_html_from_the_token_endpoint_is_a_clear_protocol_error(stand_in):
    """A proxy's HTML error page is reported as such, not as a JSON decoding traceback."""
    stand_in.token_answer = (502, "<html>Bad Gateway</html>", "text/html")
    client = OAuthClient(stand_in.url, "app", "secret")
    with pytest.raises(ProtocolError, match="not JSON") as caught:
        client.login_client_credentials()
    assert caught.value.status == 502


@pytest.mark.parametrize(
    "body",
    [
        "[" * 100_000 + "]" * 100_000,
        '{"access_token": "x", "token_type": "Bearer", "expires_in": 1e999}',
    ],
)
def test_hostile_token_response_is_a_protocol_error(stand_in, body):
    """JSON nested 100,000 deep and an infinite expires_in raise ProtocolError, the library's
    documented error, not RecursionError, and no token is kept."""
    stand_in.token_answer = (200, body, "application/json")
    client = OAuthClient(stand_in.url, "app", "secret")
    with pytest.raises(ProtocolError):
        client.login_client_credentials()
    assert client.store.load() is None


def test_a_503_on_refresh_raises_and_keeps_the_tokens(stand_in):
    """Only invalid_grant ends a login; an outage raises TokenEndpointError and forgets nothing."""
    client = OAuthClient(stand_in.url, "app", "secret", expiry_skew=None)
    stand_in.token_answer = (
        200,
        json.dumps({"access_token": "stale", "token_type": "Bearer", "refresh_token": "r1"}),
        "application/json",
    )
    tokens = client.login_password("alice", "pw")
    stand_in.token_answer = (503, '{"error": "temporarily_unavailable"}', "application/json")

    with pytest.raises(TokenEndpointError) as caught:
        client.get(f"{stand_in.url}/api")

    assert (caught.value.error, caught.value.status) == ("temporarily_unavailable", 503)
    assert client.tokens == tokens and stand_in.forms[-1]["refresh_token"] == "r1"


def test_relogin_may_return_tokens_and_the_request_is_retried(stand_in):
    """relogin(client) returning Tokens is the same as it calling login_password."""
    fresh = Tokens("fresh", refresh_token="r2")
    stale = MemoryTokenStore(Tokens("stale", refresh_token="r1"))
    client = OAuthClient(stand_in.url, "app", "secret", token_store=stale, relogin=lambda c: fresh)
    stand_in.token_answer = (400, '{"error": "invalid_grant"}', "application/json")

    response = client.get(f"{stand_in.url}/api")

    assert response.status_code == 200 and client.tokens == fresh


def test_a_second_401_after_the_renewal_is_returned_not_looped(stand_in):
    """Renew once, retry once: a resource server that keeps saying 401 gets no refresh storm."""
    client = OAuthClient(stand_in.url, "app", "secret", expiry_skew=None)
    stand_in.token_answer = (
        200,
        json.dumps({"access_token": "stale", "token_type": "Bearer", "refresh_token": "r1"}),
        "application/json",
    )
    client.login_password("alice", "pw")

    response = client.get(f"{stand_in.url}/api")

    assert response.status_code == 401
    assert [form["grant_type"] for form in stand_in.forms] == ["password", "refresh_token"]


def test_metadata_without_a_token_endpoint_is_refused(serve):
    """RFC 8414 §2: token_endpoint is required for these grants."""
    app = Flask("no-token-endpoint")
    server = serve(app)
    app.add_url_rule(
        "/.well-known/oauth-authorization-server", view_func=lambda: {"issuer": server.url}
    )
    with pytest.raises(DiscoveryError, match="token_endpoint"):
        OAuthClient(server.url, "app", "secret").login_client_credentials()
