"""The authorization code grant with PKCE (RFC 6749 §4.1, RFC 7636, RFC 9700, RFC 9207), over
real HTTP: the login page at /oauth/authorize, the code exchange at /oauth/token."""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import func, select

from auth_server import create_app
from auth_server.db import db
from auth_server.models import AuditEvent, AuthorizationCode, Client
from shared.service.logging import JsonFormatter
from shared.service.settings import ConfigurationError
from tests.support import (
    ALICE,
    BOB,
    DEMO_APP,
    NOTES,
    REPORTS,
    REPORTS_API,
    SPA_APP,
    SPA_LOOPBACK_REDIRECT,
    SPA_REDIRECT,
    WEB_APP,
    WEB_REDIRECT,
    Browser,
    FakeClock,
    auth_settings,
    code_request,
    csrf_token,
    pkce_pair,
    query_of,
    start_auth_server,
)

PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    # RFC 9700 §4.2.4: the login page must not leak its URL (client, state) to other sites.
    "Referrer-Policy": "no-referrer",
}


# -- helpers -------------------------------------------------------------------------------


def get_code(auth, user=ALICE, browser=None, **params) -> tuple[str, str, dict]:
    """Log in through the browser flow; (code, code_verifier, redirect query)."""
    verifier, challenge = pkce_pair()
    response = (browser or Browser(auth)).login(user, **code_request(challenge=challenge, **params))
    assert response.status_code == 303, response.text
    query = query_of(response.headers["Location"])
    return query["code"], verifier, query


def exchange(auth, code, verifier, client=SPA_APP, redirect_uri=SPA_REDIRECT, **extra):
    """The token request of RFC 6749 §4.1.3; a public client names itself, a confidential one
    (a (client_id, secret) tuple) authenticates with HTTP Basic."""
    data = dict(grant_type="authorization_code", code=code, redirect_uri=redirect_uri)
    if verifier is not None:
        data["code_verifier"] = verifier
    data.update(extra)
    if isinstance(client, tuple):
        return requests.post(f"{auth.url}/oauth/token", data=data, auth=client, timeout=10)
    data.setdefault("client_id", client)
    return requests.post(f"{auth.url}/oauth/token", data=data, timeout=10)


def assert_error(response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Cache-Control"] == "no-store"
    assert response.json()["error"] == error


def assert_page(response, status: int) -> None:
    """An HTML page of the authorization endpoint: never a redirect, never cached or framed."""
    assert response.status_code == status, response.text
    assert "Location" not in response.headers
    assert response.headers["Content-Type"].startswith("text/html")
    for name, value in PAGE_HEADERS.items():
        assert response.headers[name] == value
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def assert_error_redirect(
    response, auth, redirect_uri: str, error: str, state: str | None, status: int = 302
):
    """RFC 6749 §4.1.2.1 with RFC 9207: back to the client with error, state and iss; 302
    answers a GET, 303 the login form's POST (RFC 9700 §4.12)."""
    assert response.status_code == status, response.text
    location = response.headers["Location"]
    assert location.startswith(redirect_uri.split("?")[0] + "?")
    query = query_of(location)
    assert query["error"] == error
    assert query.get("state") == state
    assert query["iss"] == auth.settings.auth_issuer
    assert "code" not in query


def codes_in_database(auth) -> int:
    with auth.app.app_context():
        return db.session.scalar(select(func.count()).select_from(AuthorizationCode))


def audit_events(auth, event: str) -> list[dict]:
    with auth.app.app_context():
        rows = db.session.scalars(select(AuditEvent).where(AuditEvent.event == event)).all()
        return [{"client_id": r.client_id, **json.loads(r.detail)} for r in rows]


# -- the happy paths -----------------------------------------------------------------------


def test_public_client_logs_in_with_pkce_and_gets_tokens(auth):
    """GET shows the form, POST redirects with code, state and iss; the code and its verifier
    give an access token and a refresh token for the user, introspectable at once."""
    verifier, challenge = pkce_pair()
    browser = Browser(auth)
    params = code_request(challenge=challenge, scope="profile notes:read")
    page = browser.authorize(**params)
    assert_page(page, 200)
    assert 'type="password"' in page.text and "<script" not in page.text
    cookie = page.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/oauth/authorize" in cookie
    assert "Secure" not in cookie  # the test issuer is http

    redirected = browser.submit(page)
    assert redirected.status_code == 303
    assert redirected.headers["Cache-Control"] == "no-store"
    assert redirected.headers["Location"].startswith(SPA_REDIRECT + "?")
    query = query_of(redirected.headers["Location"])
    assert query["state"] == params["state"]
    assert query["iss"] == auth.url
    assert len(query["code"]) >= 43

    response = exchange(auth, query["code"], verifier)
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    tokens = response.json()
    assert tokens["token_type"] == "Bearer"
    assert tokens["scope"] == "profile notes:read"
    assert tokens["refresh_token"]  # public clients refresh too
    introspected = auth.introspect(tokens["access_token"]).json()
    assert introspected["active"] is True
    assert introspected["client_id"] == SPA_APP
    assert introspected["username"] == "alice"
    assert introspected["aud"] == NOTES
    assert auth.is_active(tokens["refresh_token"])

    issued = audit_events(auth, "token_issued")
    assert [e["grant_type"] for e in issued] == ["authorization_code"]
    assert [e["client_id"] for e in audit_events(auth, "login_succeeded")] == [SPA_APP]


def test_public_client_refreshes_and_logs_out_with_its_client_id(auth):
    code, verifier, _ = get_code(auth)
    tokens = exchange(auth, code, verifier).json()
    refreshed = requests.post(
        f"{auth.url}/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": SPA_APP,
        },
        timeout=10,
    )
    assert refreshed.status_code == 200, refreshed.text
    rotated = refreshed.json()["refresh_token"]
    logout = requests.post(
        f"{auth.url}/oauth/revoke", data={"token": rotated, "client_id": SPA_APP}, timeout=10
    )
    assert logout.status_code == 200
    assert not auth.is_active(rotated)
    assert not auth.is_active(tokens["access_token"])


def test_confidential_client_must_authenticate_at_the_exchange(auth):
    code, verifier, _ = get_code(auth, client_id=WEB_APP[0], redirect_uri=WEB_REDIRECT)
    for client in (WEB_APP[0], (WEB_APP[0], "wrong-secret")):
        # client_id alone (public-client style) or a wrong secret: not this client
        assert_error(exchange(auth, code, verifier, client, WEB_REDIRECT), 401, "invalid_client")
    post = exchange(
        auth, code, verifier, WEB_APP[0], WEB_REDIRECT, client_secret=WEB_APP[1]
    )  # client_secret_post
    assert post.status_code == 200, post.text

    code, verifier, _ = get_code(auth, client_id=WEB_APP[0], redirect_uri=WEB_REDIRECT)
    basic = exchange(auth, code, verifier, WEB_APP, WEB_REDIRECT)
    assert basic.status_code == 200, basic.text
    assert auth.introspect(basic.json()["access_token"]).json()["client_id"] == WEB_APP[0]


def test_public_client_cannot_use_a_secret_or_the_password_grant(auth):
    code, verifier, _ = get_code(auth)
    with_secret = exchange(auth, code, verifier, client_secret="anything")
    assert_error(with_secret, 401, "invalid_client")
    password = requests.post(
        f"{auth.url}/oauth/token",
        data={"grant_type": "password", "client_id": SPA_APP, "username": "alice", "password": "x"},
        timeout=10,
    )
    assert_error(password, 401, "invalid_client")
    assert exchange(auth, code, verifier).status_code == 200  # the failures changed nothing


# -- PKCE ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "verifier",
    [None, "", "wrong", "a" * 43, "é" * 50, "x" * 129],
    ids=["missing", "empty", "short", "other", "not-unreserved", "too-long"],
)
def test_wrong_or_missing_code_verifier_is_invalid_grant(auth, verifier):
    code, right, _ = get_code(auth)
    assert_error(exchange(auth, code, verifier), 400, "invalid_grant")
    # Only the holder of the verifier consumes the code: the right one still works once.
    assert exchange(auth, code, right).status_code == 200


@pytest.mark.parametrize(
    "pkce",
    [
        {},
        {"code_challenge_method": "S256"},
        {"code_challenge": "c" * 43},  # no method means plain (RFC 7636 §4.3)
        {"code_challenge": "c" * 43, "code_challenge_method": "plain"},
        {"code_challenge": "c" * 43, "code_challenge_method": "s256"},
        {"code_challenge": "tooshort", "code_challenge_method": "S256"},
        {"code_challenge": "c" * 42 + "=", "code_challenge_method": "S256"},
        {"code_challenge": "c" * 128, "code_challenge_method": "S256"},
    ],
    ids=["none", "method-only", "no-method", "plain", "lowercase", "short", "padded", "long"],
)
def test_plain_or_missing_challenge_is_refused_with_a_redirect(auth, pkce):
    """RFC 9700 §2.1.1: every client, S256 only. The error goes back to the client."""
    params = code_request(client_id=WEB_APP[0], redirect_uri=WEB_REDIRECT)
    params.pop("code_challenge", None)
    params.pop("code_challenge_method", None)
    response = Browser(auth).authorize(**params, **pkce)
    assert_error_redirect(response, auth, WEB_REDIRECT, "invalid_request", params["state"])
    assert response.headers["X-Frame-Options"] == "DENY"


# -- redirect URIs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"client_id": "no-such-client"},
        {"client_id": None},
        {"client_id": "bad\x00id"},
        {"client_id": DEMO_APP[0], "redirect_uri": SPA_REDIRECT},  # no redirect URIs at all
        {"redirect_uri": None},
        {"redirect_uri": "https://evil.example.com/callback"},
        {"redirect_uri": SPA_REDIRECT + "/more"},  # prefix
        {"redirect_uri": SPA_REDIRECT + "?x=1"},
        {"redirect_uri": SPA_REDIRECT + "/"},
        {"redirect_uri": "https://SPA.example.com/callback"},
        {"redirect_uri": "http://127.0.0.1:9999/callback?from=spa"},  # loopback, other port
        {"redirect_uri": "http://127.0.0.1:8002/callback"},  # registered one has a query
        {"redirect_uri": WEB_REDIRECT},  # another client's
        {"client_id": "no-such-client", "response_type": "token"},
        {"redirect_uri": "https://evil.example.com/cb", "code_challenge_method": "plain"},
    ],
    ids=[
        "unknown-client",
        "no-client",
        "garbage-client",
        "client-without-redirects",
        "no-redirect-uri",
        "unregistered",
        "prefix",
        "extra-query",
        "trailing-slash",
        "case",
        "loopback-port",
        "query-dropped",
        "other-clients",
        "unknown-client-bad-response-type",
        "unregistered-with-other-errors",
    ],
)
def test_bad_client_or_redirect_uri_shows_an_error_page_and_never_redirects(auth, overrides):
    """RFC 6749 §4.1.2.1: the user is told; nothing goes to an unverified URI."""
    _, challenge = pkce_pair()
    params = {**code_request(challenge=challenge), **overrides}
    page = Browser(auth).authorize(**{k: v for k, v in params.items() if v is not None})
    assert_page(page, 400)
    assert "evil" not in page.text and 'type="password"' not in page.text


def test_repeated_client_id_redirect_uri_or_state_is_an_error_page(auth):
    _, challenge = pkce_pair()
    base = code_request(challenge=challenge)
    for name in ("client_id", "redirect_uri", "state"):
        items = list(base.items()) + [(name, base[name])]
        response = requests.get(
            f"{auth.url}/oauth/authorize", params=items, allow_redirects=False, timeout=10
        )
        assert_page(response, 400)
    items = list(base.items()) + [("scope", "profile")]
    response = requests.get(
        f"{auth.url}/oauth/authorize",
        params=items + [("scope", "profile")],
        allow_redirects=False,
        timeout=10,
    )
    assert_error_redirect(response, auth, SPA_REDIRECT, "invalid_request", base["state"])


def test_redirect_uri_query_is_kept_and_must_match_at_the_token_endpoint(auth):
    code, verifier, query = get_code(auth, redirect_uri=SPA_LOOPBACK_REDIRECT)
    assert query["from"] == "spa"  # RFC 6749 §3.1.2: the registered query is retained
    for wrong in (SPA_REDIRECT, "http://127.0.0.1:8002/callback", SPA_LOOPBACK_REDIRECT + "&x"):
        response = exchange(auth, code, verifier, redirect_uri=wrong)
        assert_error(response, 400, "invalid_grant")
    missing = requests.post(
        f"{auth.url}/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": verifier,
            "client_id": SPA_APP,
        },
        timeout=10,
    )
    assert_error(missing, 400, "invalid_request")
    assert exchange(auth, code, verifier, redirect_uri=SPA_LOOPBACK_REDIRECT).status_code == 200


# -- codes: single use, expiry, client binding ---------------------------------------------


def test_second_use_of_a_code_is_refused_and_revokes_the_first_exchanges_tokens(auth):
    code, verifier, _ = get_code(auth)
    first = exchange(auth, code, verifier).json()
    assert auth.is_active(first["access_token"]) and auth.is_active(first["refresh_token"])
    second = exchange(auth, code, verifier)
    assert_error(second, 400, "invalid_grant")
    assert not auth.is_active(first["access_token"])
    assert not auth.is_active(first["refresh_token"])
    refresh = requests.post(
        f"{auth.url}/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "client_id": SPA_APP,
        },
        timeout=10,
    )
    assert_error(refresh, 400, "invalid_grant")
    (event,) = audit_events(auth, "authorization_code_reuse_detected")
    assert event["client_id"] == SPA_APP and event["family_revoked"] is True
    assert code not in json.dumps(event)


@pytest.mark.parametrize(
    "replay",
    [
        pytest.param(dict(verifier=None), id="without-code-verifier"),
        pytest.param(dict(verifier="wrong"), id="wrong-code-verifier"),
        pytest.param(dict(redirect_uri=SPA_LOOPBACK_REDIRECT), id="other-redirect-uri"),
        pytest.param(dict(client=WEB_APP), id="other-client"),
    ],
)
def test_replay_of_a_used_code_failing_any_check_is_invalid_grant_and_revokes_nothing(auth, replay):
    """Security finding 7: someone who saw a used code (in a log, a Referer, browser history)
    but cannot prove it (no code_verifier, another redirect_uri or client) must not be able to
    log the victim out. Only a replay that a real exchange would accept revokes."""
    code, verifier, _ = get_code(auth)
    first = exchange(auth, code, verifier).json()
    args = dict(verifier=verifier, client=SPA_APP, redirect_uri=SPA_REDIRECT)
    args.update(replay)
    if args["verifier"] == "wrong":
        args["verifier"] = pkce_pair()[0]
    replayed = exchange(auth, code, args["verifier"], args["client"], args["redirect_uri"])
    assert_error(replayed, 400, "invalid_grant")
    assert auth.is_active(first["access_token"]) and auth.is_active(first["refresh_token"])
    assert audit_events(auth, "authorization_code_reuse_detected") == []


def test_replay_of_a_used_code_with_every_proof_revokes_even_after_expiry(serve, make_database_url):
    """A replay is a replay however late: expiry does not shield the login from revocation."""
    clock = FakeClock()
    auth = start_auth_server(serve, make_database_url("auth"), clock=clock)
    code, verifier, _ = get_code(auth)
    first = exchange(auth, code, verifier).json()
    clock.advance(61)  # past the code's 60 s, well inside the tokens' lifetimes
    assert_error(exchange(auth, code, verifier), 400, "invalid_grant")
    assert not auth.is_active(first["access_token"])
    assert not auth.is_active(first["refresh_token"])
    (event,) = audit_events(auth, "authorization_code_reuse_detected")
    assert event["family_revoked"] is True


def test_concurrent_exchanges_of_one_code_issue_tokens_once(auth):
    """The conditional UPDATE decides: one exchange wins; the others are second uses, so the
    winner's tokens are revoked too (RFC 6749 §4.1.2)."""
    code, verifier, _ = get_code(auth)
    n = 20
    barrier = threading.Barrier(n)

    def attempt(_):
        barrier.wait()
        return exchange(auth, code, verifier)

    with ThreadPoolExecutor(n) as pool:
        responses = list(pool.map(attempt, range(n)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [400] * (n - 1), [r.text for r in responses]
    winner = next(r.json() for r in responses if r.status_code == 200)
    assert not auth.is_active(winner["access_token"])
    assert not auth.is_active(winner["refresh_token"])


def test_expired_code_is_invalid_grant(serve, make_database_url):
    clock = FakeClock()
    auth = start_auth_server(serve, make_database_url("auth"), clock=clock)
    code, verifier, _ = get_code(auth)
    clock.advance(59)
    assert exchange(auth, code, verifier).status_code == 200  # AUTHORIZATION_CODE_TTL is 60 s
    code, verifier, _ = get_code(auth)
    clock.advance(60)
    assert_error(exchange(auth, code, verifier), 400, "invalid_grant")


def test_code_issued_to_client_a_is_useless_to_client_b(auth):
    code, verifier, _ = get_code(auth)
    stolen = exchange(auth, code, verifier, WEB_APP, SPA_REDIRECT)
    assert_error(stolen, 400, "invalid_grant")
    assert exchange(auth, code, verifier).status_code == 200  # the attempt changed nothing


def test_unknown_or_garbage_codes_are_invalid_grant_and_change_nothing(auth):
    verifier, _ = pkce_pair()
    for code in ("nope", "x" * 5000, "\u00e9" * 20, "%00"):
        assert_error(exchange(auth, code, verifier), 400, "invalid_grant")
    assert_error(exchange(auth, "", verifier), 400, "invalid_request")
    assert audit_events(auth, "authorization_code_reuse_detected") == []


def test_password_change_kills_codes_not_yet_exchanged(auth):
    code, verifier, _ = get_code(auth)
    result = auth.app.test_cli_runner().invoke(
        args=["users", "set-password", "alice", "--password", "looking-glass-2"]
    )
    assert result.exit_code == 0, result.output
    assert_error(exchange(auth, code, verifier), 400, "invalid_grant")


# -- the login form ------------------------------------------------------------------------


@pytest.mark.parametrize("csrf", [None, "", "wrong-token", "other-session"])
def test_login_without_the_right_csrf_token_is_refused_and_issues_no_code(auth, csrf):
    _, challenge = pkce_pair()
    browser = Browser(auth)
    page = browser.authorize(**code_request(challenge=challenge))
    if csrf == "other-session":
        # a token that is valid, but for another browser's cookie
        csrf = csrf_token(Browser(auth).authorize(**code_request(challenge=challenge)).text)
    response = browser.submit(page, csrf_token=csrf)
    assert_page(response, 400)
    assert codes_in_database(auth) == 0


def test_login_form_posted_without_its_cookie_is_refused(auth):
    _, challenge = pkce_pair()
    browser = Browser(auth)
    page = browser.authorize(**code_request(challenge=challenge))
    browser.http.cookies.clear()
    assert_page(browser.submit(page), 400)
    assert codes_in_database(auth) == 0


def test_a_login_form_serves_one_login_and_expires(serve, make_database_url):
    clock = FakeClock()
    auth = start_auth_server(serve, make_database_url("auth"), clock=clock)
    _, challenge = pkce_pair()
    browser = Browser(auth)
    page = browser.authorize(**code_request(challenge=challenge))
    assert browser.submit(page).status_code == 303
    assert_page(browser.submit(page), 400)  # the same form posted again
    page = browser.authorize(**code_request(challenge=challenge))
    clock.advance(1801)
    assert_page(browser.submit(page), 400)
    assert codes_in_database(auth) == 1


def test_wrong_password_shows_the_form_again_and_is_audited(auth):
    _, challenge = pkce_pair()
    browser = Browser(auth)
    page = browser.authorize(**code_request(challenge=challenge))
    response = browser.submit(page, password="not-the-password")
    assert_page(response, 200)
    assert "incorrect" in response.text
    assert 'value="alice"' in response.text and "not-the-password" not in response.text
    (failed,) = audit_events(auth, "login_failed")
    assert failed["client_id"] == SPA_APP and failed["reason"] == "bad_credentials"
    assert codes_in_database(auth) == 0
    retry = browser.submit(response)
    assert retry.status_code == 303  # the re-shown form works


def test_missing_credentials_show_the_form_again(auth):
    _, challenge = pkce_pair()
    browser = Browser(auth)
    page = browser.authorize(**code_request(challenge=challenge))
    assert_page(browser.submit(page, password=None), 200)
    assert_page(browser.submit(page, username=""), 200)
    assert audit_events(auth, "login_failed") == []


def test_failed_logins_are_throttled_like_the_password_grant(serve, make_database_url):
    auth = start_auth_server(
        serve, make_database_url("auth"), login_failures_per_username="2 per 5 minutes"
    )
    _, challenge = pkce_pair()
    browser = Browser(auth)
    page = browser.authorize(**code_request(challenge=challenge))
    for _ in range(2):
        assert browser.submit(page, password="wrong-password").status_code == 200
    throttled = browser.submit(page)  # even the right password: refused before hashing
    assert_page(throttled, 429)
    assert int(throttled.headers["Retry-After"]) > 0
    # the password grant shares the counters
    assert auth.token(grant_type="password", username="alice", password="x").status_code == 429


def test_disabled_user_cannot_log_in(auth):
    auth.app.test_cli_runner().invoke(args=["users", "disable", "alice"])
    _, challenge = pkce_pair()
    browser = Browser(auth)
    response = browser.submit(browser.authorize(**code_request(challenge=challenge)))
    assert_page(response, 200)
    assert codes_in_database(auth) == 0


# -- state, iss, scope, resource, prompt ---------------------------------------------------


def test_state_comes_back_exactly_and_is_omitted_when_absent(auth):
    state = "ünï cødé & = + / ?#"
    _, _, query = get_code(auth, state=state)
    assert query["state"] == state
    _, _, query = get_code(auth, state=None)
    assert "state" not in query and query["iss"] == auth.url


def test_unsupported_response_type_goes_back_with_state_and_iss(auth):
    _, challenge = pkce_pair()
    for response_type, error in (
        ("token", "unsupported_response_type"),
        ("code id_token", "unsupported_response_type"),
        (None, "invalid_request"),
    ):
        params = code_request(challenge=challenge, response_type=response_type)
        response = Browser(auth).authorize(**params)
        assert_error_redirect(response, auth, SPA_REDIRECT, error, params["state"])


def test_scope_and_resource_narrow_what_the_client_may_have(auth):
    code, verifier, _ = get_code(
        auth,
        client_id=WEB_APP[0],
        redirect_uri=WEB_REDIRECT,
        scope="notes:read",
        resource=REPORTS,
    )
    tokens = exchange(auth, code, verifier, WEB_APP, WEB_REDIRECT).json()
    introspected = auth.introspect(tokens["access_token"], client=REPORTS_API).json()
    assert introspected["scope"] == "notes:read"
    assert introspected["aud"] == REPORTS

    # by default: all the client's scopes and audiences
    code, verifier, _ = get_code(auth, client_id=WEB_APP[0], redirect_uri=WEB_REDIRECT)
    tokens = exchange(auth, code, verifier, WEB_APP, WEB_REDIRECT).json()
    introspected = auth.introspect(tokens["access_token"]).json()
    assert introspected["scope"] == "profile notes:read notes:write reports:read"
    assert introspected["aud"] == [NOTES, REPORTS]

    # and the user's limits: bob may delegate only profile and notes:read
    code, verifier, _ = get_code(auth, BOB)
    assert exchange(auth, code, verifier).json()["scope"] == "profile notes:read"


def test_scope_or_resource_beyond_the_client_is_refused_with_a_redirect(auth):
    _, challenge = pkce_pair()
    for extra, error in (
        ({"scope": "profile reports:read"}, "invalid_scope"),
        ({"scope": "bad\\scope"}, "invalid_scope"),
        ({"resource": REPORTS}, "invalid_target"),
        ({"resource": "not a uri"}, "invalid_target"),
        ({"resource": "http://[::1"}, "invalid_target"),  # urlsplit raises on it
    ):
        params = code_request(challenge=challenge, **extra)
        response = Browser(auth).authorize(**params)
        assert_error_redirect(response, auth, SPA_REDIRECT, error, params["state"])


def test_resource_at_the_token_endpoint_narrows_and_is_checked(auth):
    """RFC 8707 §2.2: `resource` in the code exchange picks among the code's audiences."""
    code, verifier, _ = get_code(auth, client_id=WEB_APP[0], redirect_uri=WEB_REDIRECT)
    for resource in ("http://[::1", "urn:tessera:unknown"):
        response = exchange(auth, code, verifier, WEB_APP, WEB_REDIRECT, resource=resource)
        assert_error(response, 400, "invalid_target")
    narrowed = exchange(auth, code, verifier, WEB_APP, WEB_REDIRECT, resource=NOTES)
    assert auth.introspect(narrowed.json()["access_token"]).json()["aud"] == NOTES


def test_scope_beyond_the_user_is_denied_with_a_303_after_the_login(auth):
    """The client may have notes:write, bob may not grant it: access_denied saying so (RFC 6749
    §4.1.2.1), redirected with 303 since it answers the password's POST (RFC 9700 §4.12)."""
    _, challenge = pkce_pair()
    params = code_request(challenge=challenge, scope="profile notes:write")
    response = Browser(auth).login(BOB, **params)
    assert_error_redirect(
        response, auth, SPA_REDIRECT, "access_denied", params["state"], status=303
    )
    description = query_of(response.headers["Location"])["error_description"]
    assert description == "The user may not grant the scope notes:write."
    assert codes_in_database(auth) == 0


def test_prompt_none_gets_login_required(auth):
    """No single sign-on session exists, so a request that forbids the login page fails."""
    _, challenge = pkce_pair()
    params = code_request(challenge=challenge, prompt="none")
    browser = Browser(auth)
    response = browser.authorize(**params)
    assert_error_redirect(response, auth, SPA_REDIRECT, "login_required", params["state"])
    assert "Set-Cookie" not in response.headers
    # even right after a login in the same browser
    get_code(auth, browser=browser)
    response = browser.authorize(**params)
    assert_error_redirect(response, auth, SPA_REDIRECT, "login_required", params["state"])


# -- bad input and leaks -------------------------------------------------------------------


def test_bad_input_gets_4xx_never_500(auth):
    _, challenge = pkce_pair()
    good = code_request(challenge=challenge)
    url = f"{auth.url}/oauth/authorize"
    redirectable = [
        {**good, "response_type": "\x00\ufffd"},
        {**good, "scope": "\x00"},
        {**good, "resource": "\x00:"},
        {**good, "code_challenge": "\u00e9" * 43},
        {**good, "state": "s" * 3000},
        {**good, "prompt": "\x00"},
    ]
    for params in redirectable:
        response = requests.get(url, params=params, allow_redirects=False, timeout=10)
        assert response.status_code in (200, 302), (params, response.text)
    pages = [
        requests.get(url, params={**good, "state": "s" * 9000}, allow_redirects=False, timeout=10),
        requests.get(url, params={"client_id": "x" * 200}, allow_redirects=False, timeout=10),
        requests.get(url + "?client_id=%ZZ&redirect_uri=%", allow_redirects=False, timeout=10),
        requests.get(url, allow_redirects=False, timeout=10),
    ]
    browser = Browser(auth)
    page = browser.authorize(**good)
    action = auth.url + "/oauth/authorize?" + requests.compat.urlencode(good)
    pages += [
        browser.http.post(action, json={"username": "alice"}, allow_redirects=False, timeout=10),
        browser.http.post(
            action, files={"username": ("u", b"alice")}, allow_redirects=False, timeout=10
        ),
        browser.http.post(
            action,
            data=b"\xff\xfe=\xfd&csrf_token=%ZZ",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            allow_redirects=False,
            timeout=10,
        ),
    ]
    for response in pages:
        assert_page(response, 400)
    oversized = browser.http.post(
        action,
        data={"csrf_token": csrf_token(page.text), "username": "a" * 70_000, "password": "x"},
        allow_redirects=False,
        timeout=10,
    )
    assert oversized.status_code == 413
    long_username = browser.submit(page, username="\u00e9" * 5000)
    assert_page(long_username, 200)
    assert requests.put(url, params=good, timeout=10).status_code == 405
    # the token endpoint with the same kind of garbage
    for data in (
        {"grant_type": "authorization_code", "client_id": SPA_APP},
        {"grant_type": "authorization_code", "client_id": SPA_APP, "code": "x"},
        {
            "grant_type": "authorization_code",
            "client_id": SPA_APP,
            "code": "\x00",
            "redirect_uri": "\x00",
            "code_verifier": "\x00" * 50,
        },
    ):
        response = requests.post(f"{auth.url}/oauth/token", data=data, timeout=10)
        assert 400 <= response.status_code < 500, response.text
    as_json = requests.post(
        f"{auth.url}/oauth/token",
        json={"grant_type": "authorization_code", "client_id": SPA_APP},
        timeout=10,
    )
    assert_error(as_json, 400, "invalid_request")
    assert codes_in_database(auth) == 0


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))


def test_no_code_token_password_or_csrf_token_is_logged(serve, make_database_url, caplog):
    auth = start_auth_server(serve, make_database_url("auth"), log_level="DEBUG", log_format="json")
    collect = _Collect()
    tessera = logging.getLogger("tessera")  # does not propagate: its own handler
    tessera.addHandler(collect)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.WARNING, logger="sqlalchemy")
    try:
        verifier, challenge = pkce_pair()
        browser = Browser(auth)
        page = browser.authorize(**code_request(challenge=challenge))
        csrf = csrf_token(page.text)
        failed = browser.submit(page, password="a-wrong-password")
        redirected = browser.submit(failed)
        code = query_of(redirected.headers["Location"])["code"]
        tokens = exchange(auth, code, verifier).json()
        exchange(auth, code, verifier)  # reuse: audited, tokens revoked
        web_code, web_verifier, _ = get_code(auth, client_id=WEB_APP[0], redirect_uri=WEB_REDIRECT)
        web_tokens = exchange(auth, web_code, web_verifier, WEB_APP, WEB_REDIRECT).json()
    finally:
        tessera.removeHandler(collect)
    logs = "\n".join(collect.lines) + caplog.text
    assert "authorization_code_reuse_detected" in logs and "login_failed" in logs
    cookie = browser.http.cookies.get("tessera_login")
    for secret in (
        code,
        verifier,
        web_code,
        web_verifier,
        tokens["access_token"],
        tokens["refresh_token"],
        web_tokens["access_token"],
        web_tokens["refresh_token"],
        csrf,
        ALICE[1],
        "a-wrong-password",
        WEB_APP[1],
        *([cookie] if cookie else []),
    ):
        assert secret not in logs


def test_codes_are_stored_only_as_digests(auth):
    code, verifier, _ = get_code(auth, scope="profile")
    with auth.app.app_context():
        row = db.session.scalars(select(AuthorizationCode)).one()
        stored = json.dumps([str(v) for v in row.__dict__.values()])
    assert code not in stored and verifier not in stored
    assert len(row.code_hash) == 64 and row.scope == "profile"
    assert row.expires_at - row.created_at == 60 and row.consumed_at is None


# -- settings, registration ----------------------------------------------------------------


def test_session_secret_is_required_outside_demo_mode(tmp_path):
    url = f"sqlite:///{tmp_path / 'auth.sqlite3'}"
    missing = auth_settings(
        url,
        "http://127.0.0.1:8000",
        auth_session_secret=None,
        auth_session_secret_file=str(tmp_path / "none"),
    )
    with pytest.raises(ConfigurationError, match="AUTH_SESSION_SECRET"):
        create_app(missing)
    with pytest.raises(ConfigurationError, match="AUTH_SESSION_SECRET"):
        create_app(auth_settings(url, "http://127.0.0.1:8000", auth_session_secret="short"))


def test_demo_mode_generates_the_session_secret_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'auth.sqlite3'}"
    path = tmp_path / "instance" / "session-secret.key"
    settings = auth_settings(
        url,
        "https://auth.example.com",
        tessera_demo=True,
        auth_key_encryption_key_file=str(tmp_path / "kek"),
        auth_session_secret=None,
        auth_session_secret_file=str(path),
    )
    first, second = create_app(settings), create_app(settings)
    assert path.stat().st_mode & 0o777 == 0o600
    assert first.secret_key == second.secret_key == path.read_text().strip()
    assert len(first.secret_key) >= 32
    assert first.config["SESSION_COOKIE_SECURE"] is True  # https issuer


def test_clients_create_public_with_redirect_uris(auth):
    runner = auth.app.test_cli_runner()
    result = runner.invoke(
        args=[
            "clients",
            "create",
            "cli-spa",
            "--public",
            "--redirect-uris",
            "https://app.example.com/cb http://127.0.0.1:9000/cb",
            "--scopes",
            "profile",
            "--audiences",
            NOTES,
        ]
    )
    assert result.exit_code == 0, result.output
    assert "client_secret" not in result.output
    with auth.app.app_context():
        client = db.session.scalar(select(Client).where(Client.client_id == "cli-spa"))
        assert client.client_type == "public" and client.secret_hash == ""
        assert client.grant_types == "authorization_code refresh_token"
        assert client.redirect_uris == "https://app.example.com/cb http://127.0.0.1:9000/cb"
    code, verifier, _ = get_code(auth, client_id="cli-spa", redirect_uri="http://127.0.0.1:9000/cb")
    exchanged = exchange(auth, code, verifier, "cli-spa", "http://127.0.0.1:9000/cb")
    assert exchanged.status_code == 200, exchanged.text
    assert "cli-spa\tpublic" in runner.invoke(args=["clients", "list"]).output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--redirect-uris", "https://*.example.com/cb"], "wildcard"),
        (["--redirect-uris", "http://app.example.com/cb"], "loopback"),
        (["--redirect-uris", "https://app.example.com/cb#x"], "fragment"),
        (["--redirect-uris", "https://user@app.example.com/cb"], "user info"),
        (["--redirect-uris", "/relative"], "host"),
        (["--redirect-uris", "javascript:alert(1)"], "host"),
        ([], "needs redirect URIs"),
        (["--redirect-uris", "https://a.example/cb", "--grant-types", "password"], "public"),
        (["--redirect-uris", "https://a.example/cb", "--can-introspect"], "introspect"),
    ],
)
def test_clients_create_refuses_unsafe_registrations(auth, args, message):
    result = auth.app.test_cli_runner().invoke(args=["clients", "create", "bad", "--public", *args])
    assert result.exit_code != 0
    assert message in result.output
