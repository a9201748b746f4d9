"""Consent for third-party apps at the authorization endpoint: the screen, Allow and Deny
(RFC 6749 §4.1.2.1), remembering the Allow per user, app and scopes, prompt=consent, and
withdrawing the Allow on the account page."""

from __future__ import annotations

import pytest
import requests
from sqlalchemy import func, select

from auth_server.db import db
from auth_server.models import AuthorizationCode, Consent
from tests.auth_server.test_account_page import AccountBrowser
from tests.support import (
    PARTNER,
    SPA_REDIRECT,
    Browser,
    code_request,
    csrf_token,
    form_action,
    pkce_pair,
    query_of,
    register_partner_app,
)

PARTNER_REDIRECT = "https://partner.example.org/callback"


@pytest.fixture
def auth(auth):
    register_partner_app(auth, PARTNER_REDIRECT)
    return auth


def partner_request(challenge: str, **params) -> dict:
    return code_request(
        client_id=PARTNER, redirect_uri=PARTNER_REDIRECT, challenge=challenge, **params
    )


def decide(browser: Browser, page: requests.Response, decision: str, **overrides):
    form = {"csrf_token": csrf_token(page.text), "decision": decision, **overrides}
    return browser.http.post(
        browser.auth.url + form_action(page.text), data=form, allow_redirects=False, timeout=10
    )


def exchange(auth, code: str, verifier: str, client_id=PARTNER, redirect=PARTNER_REDIRECT):
    return requests.post(
        f"{auth.url}/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect,
            "code_verifier": verifier,
            "client_id": client_id,
        },
        timeout=10,
    )


def count(auth, model) -> int:
    with auth.app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


def test_third_party_app_gets_a_consent_screen_and_allow_issues_the_code(auth):
    verifier, challenge = pkce_pair()
    browser = Browser(auth)
    params = partner_request(challenge, scope="notes:read notes:write")
    screen = browser.login(**params)
    assert screen.status_code == 200
    assert "Allow Partner Notes to use your account?" in screen.text
    assert "Read your notes" in screen.text
    assert "Create, change and delete your notes" in screen.text
    assert "You will return to partner.example.org" in screen.text
    assert count(auth, AuthorizationCode) == 0  # nothing before the answer

    allowed = decide(browser, screen, "allow")
    assert allowed.status_code == 303
    query = query_of(allowed.headers["Location"])
    assert allowed.headers["Location"].startswith(PARTNER_REDIRECT + "?")
    assert query["state"] == params["state"] and query["iss"] == auth.url
    tokens = exchange(auth, query["code"], verifier)
    assert tokens.status_code == 200, tokens.text
    assert tokens.json()["scope"] == "notes:read notes:write"

    # Remembered: the same scopes again go straight back to the app after the password.
    again = browser.login(**partner_request(pkce_pair()[1], scope="notes:read"))
    assert again.status_code == 303 and "code" in query_of(again.headers["Location"])
    # A scope not allowed yet asks again.
    more = browser.login(**partner_request(pkce_pair()[1], scope="notes:read profile"))
    assert more.status_code == 200 and "See your username" in more.text


def test_deny_sends_access_denied_with_state_and_iss_and_stores_nothing(auth):
    browser = Browser(auth)
    params = partner_request(pkce_pair()[1], scope="notes:read")
    screen = browser.login(**params)
    denied = decide(browser, screen, "deny")
    assert denied.status_code == 303
    assert denied.headers["Location"].startswith(PARTNER_REDIRECT + "?")
    query = query_of(denied.headers["Location"])
    assert query["error"] == "access_denied"
    assert query["state"] == params["state"] and query["iss"] == auth.url
    assert "code" not in query
    assert count(auth, AuthorizationCode) == 0
    assert count(auth, Consent) == 0


def test_prompt_consent_asks_again_even_when_allowed_and_for_first_party_apps(auth):
    browser = Browser(auth)
    screen = browser.login(**partner_request(pkce_pair()[1], scope="notes:read"))
    decide(browser, screen, "allow")
    asked = browser.login(**partner_request(pkce_pair()[1], scope="notes:read", prompt="consent"))
    assert asked.status_code == 200 and "Allow Partner Notes" in asked.text

    first_party = browser.login(**code_request(challenge=pkce_pair()[1], prompt="consent"))
    assert first_party.status_code == 200 and "Allow spa-app" in first_party.text
    allowed = decide(browser, first_party, "allow")
    assert "code" in query_of(allowed.headers["Location"])
    with auth.app.app_context():  # a first-party app's answer is not remembered
        assert db.session.scalar(select(func.count()).select_from(Consent)) == 1


def test_first_party_apps_never_ask(auth):
    signed_in = Browser(auth).login(**code_request(challenge=pkce_pair()[1]))
    assert signed_in.status_code == 303
    assert signed_in.headers["Location"].startswith(SPA_REDIRECT + "?")
    assert "code" in query_of(signed_in.headers["Location"])


@pytest.mark.parametrize(
    "overrides,why",
    [
        ({"csrf_token": "wrong"}, "csrf"),
        ({"csrf_token": None}, "csrf"),
        ({"decision": "maybe"}, "decision"),
    ],
    ids=["wrong-csrf", "missing-csrf", "unknown-decision"],
)
def test_a_forged_or_malformed_answer_is_refused_and_issues_nothing(auth, overrides, why):
    browser = Browser(auth)
    screen = browser.login(**partner_request(pkce_pair()[1], scope="notes:read"))
    form = {"csrf_token": csrf_token(screen.text), "decision": "allow", **overrides}
    answer = browser.http.post(
        auth.url + form_action(screen.text),
        data={k: v for k, v in form.items() if v is not None},
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 400
    assert count(auth, AuthorizationCode) == 0
    assert count(auth, Consent) == 0


def test_the_answer_is_for_its_own_authorization_request_only(auth):
    """An Allow posted to another request (another state or challenge) is refused."""
    browser = Browser(auth)
    screen = browser.login(**partner_request(pkce_pair()[1], scope="notes:read"))
    other = partner_request(pkce_pair()[1], scope="notes:read")
    answer = browser.http.post(
        f"{auth.url}/oauth/authorize",
        params=other,
        data={"csrf_token": csrf_token(screen.text), "decision": "allow"},
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 400
    assert count(auth, AuthorizationCode) == 0


def test_an_answer_without_a_password_is_refused(auth):
    """The consent screen comes only after the password: posting Allow straight away fails."""
    browser = Browser(auth)
    params = partner_request(pkce_pair()[1], scope="notes:read")
    form_page = browser.authorize(**params)
    answer = decide(browser, form_page, "allow")
    assert answer.status_code == 400
    assert count(auth, AuthorizationCode) == 0


def test_withdrawing_on_the_account_page_revokes_the_apps_tokens_and_asks_again(auth):
    verifier, challenge = pkce_pair()
    browser = Browser(auth)
    screen = browser.login(**partner_request(challenge, scope="notes:read"))
    code = query_of(decide(browser, screen, "allow").headers["Location"])["code"]
    partner_tokens = exchange(auth, code, verifier).json()
    first_party = auth.login()

    account = AccountBrowser(auth)
    account.sign_in()
    assert "Partner Notes" in account.page.text and "Read your notes" in account.page.text
    removed = account.post(f"/account/apps/{PARTNER}/withdraw")
    assert "The app no longer has access" in account.follow(removed).text
    assert not auth.is_active(partner_tokens["access_token"])
    assert not auth.is_active(partner_tokens["refresh_token"])
    assert auth.is_active(first_party["access_token"])  # other apps are untouched
    assert auth.is_active(first_party["refresh_token"])
    assert "Removed the access of Partner Notes" in account.page.text
    asked = browser.login(**partner_request(pkce_pair()[1], scope="notes:read"))
    assert asked.status_code == 200 and "Allow Partner Notes" in asked.text


def test_prompt_none_is_refused_with_login_required(auth):
    params = partner_request(pkce_pair()[1], scope="notes:read", prompt="none")
    response = Browser(auth).authorize(**params)
    assert response.status_code == 302
    assert query_of(response.headers["Location"])["error"] == "login_required"
