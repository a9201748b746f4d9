"""The account page and the consent screen in Chromium: signing in (by keyboard too), the list of
sessions, signing one out, "Sign out everywhere" from a second browser ending the first one's
tokens at once, changing the password, and Allow/Deny on a third-party app's consent screen."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
import requests

from tests.support import (
    ALICE,
    PARTNER,
    SPA_APP,
    SPA_LOOPBACK_REDIRECT,
    code_request,
    pkce_pair,
    query_of,
    register_partner_app,
    start_auth_server,
    start_resource_server,
)

PARTNER_REDIRECT = "http://127.0.0.1:8003/partner/callback"


@pytest.fixture
def auth(serve, make_database_url):
    server = start_auth_server(serve, make_database_url("auth"))
    register_partner_app(server, PARTNER_REDIRECT)
    return server


@pytest.fixture
def notes_api(serve, make_database_url, auth):
    return start_resource_server(serve, make_database_url("notes"), auth)


def redirect_to_app(page, click) -> str:
    """Click, and return where the authorization server sends the browser back to the app
    (the 303's Location: Playwright's routing never sees a redirect's target)."""
    with page.expect_response(lambda r: r.status == 303 and "/oauth/authorize" in r.url) as info:
        click()
    return info.value.headers["location"]


def sign_in_with_app(auth, page, client_id=SPA_APP, redirect_uri=SPA_LOOPBACK_REDIRECT, **params):
    verifier, challenge = pkce_pair()
    request = code_request(client_id, redirect_uri, challenge, **params)
    page.goto(f"{auth.url}/oauth/authorize?{urlencode(request)}")
    page.get_by_label("Username").fill(ALICE[0])
    page.get_by_label("Password").fill(ALICE[1])
    return request, verifier


def exchange(
    auth, callback_url: str, verifier: str, client_id=SPA_APP, redirect=SPA_LOOPBACK_REDIRECT
):
    code = query_of(callback_url)["code"]
    response = requests.post(
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
    assert response.status_code == 200, response.text
    return response.json()


def app_tokens(auth, context) -> dict:
    """An app in `context` signs the user in (authorization code + PKCE) and holds tokens."""
    page = context.new_page()
    _, verifier = sign_in_with_app(auth, page)
    location = redirect_to_app(page, page.get_by_role("button", name="Sign in").click)
    return exchange(auth, location, verifier)


def open_account(auth, page):
    page.goto(f"{auth.url}/account")
    page.get_by_label("Username").fill(ALICE[0])
    page.get_by_label("Password").fill(ALICE[1])
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Your account").wait_for()
    page.get_by_text("Signed in as").wait_for()


def test_account_page_lists_sessions_and_signs_one_out(auth, notes_api, new_context, shot):
    phone, laptop = new_context(), new_context()
    first, second = app_tokens(auth, phone), app_tokens(auth, laptop)
    page = new_context().new_page()
    page.goto(f"{auth.url}/account")
    shot(page, "sign-in")
    open_account(auth, page)
    sessions = page.get_by_role("list", name="Active sessions").get_by_role("listitem")
    assert sessions.count() == 2
    assert "spa-app" in sessions.first.inner_text()
    assert "Chrome on Linux" in sessions.first.inner_text()
    assert "127.0.0.1" in sessions.first.inner_text()
    shot(page, "sessions")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    shot(page, "sessions-phone")
    page.set_viewport_size({"width": 1280, "height": 720})
    html = page.content()
    for tokens in (first, second):
        assert tokens["access_token"] not in html and tokens["refresh_token"] not in html
    for cookie in page.context.cookies():
        assert cookie["httpOnly"], cookie["name"]

    sessions.first.get_by_role("button", name="Sign out").click()
    page.get_by_role("status").wait_for()
    assert "That session is signed out" in page.get_by_role("status").inner_text()
    assert page.get_by_role("list", name="Active sessions").get_by_role("listitem").count() == 1
    shot(page, "one-signed-out")
    # The most recently used session was the first listed: the second login.
    assert notes_api.get("/api/notes", second["access_token"]).status_code == 401
    assert notes_api.get("/api/notes", first["access_token"]).status_code == 200


def test_sign_out_everywhere_in_one_browser_ends_the_other_browsers_tokens_at_once(
    auth, notes_api, new_context, shot
):
    app_browser = new_context()
    tokens = app_tokens(auth, app_browser)
    assert notes_api.get("/api/notes", tokens["access_token"]).status_code == 200

    page = new_context().new_page()
    open_account(auth, page)
    page.get_by_role("button", name="Sign out everywhere").click()
    page.get_by_role("status").wait_for()
    assert "Every app and device is signed out" in page.get_by_role("status").inner_text()
    shot(page, "signed-out-everywhere")

    refused = notes_api.get("/api/notes", tokens["access_token"])
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
    refresh = requests.post(
        f"{auth.url}/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": SPA_APP,
        },
        timeout=10,
    )
    assert refresh.status_code == 400 and refresh.json()["error"] == "invalid_grant"
    assert "No app is signed in" in page.content()
    assert page.get_by_text("Signed out everywhere").count() == 1  # the security event


def test_change_password_in_the_browser(auth, notes_api, new_context, shot):
    tokens = app_tokens(auth, new_context())
    page = new_context().new_page()
    open_account(auth, page)
    page.get_by_label("Current password").fill("not-it")
    page.get_by_label("New password", exact=True).fill("a-brand-new-password")
    page.get_by_label("New password again").fill("a-brand-new-password")
    page.get_by_role("button", name="Change password").click()
    page.get_by_role("alert").wait_for()
    assert "incorrect" in page.get_by_role("alert").inner_text()
    shot(page, "wrong-current-password")
    assert notes_api.get("/api/notes", tokens["access_token"]).status_code == 200

    page.get_by_label("Current password").fill(ALICE[1])
    page.get_by_label("New password", exact=True).fill("a-brand-new-password")
    page.get_by_label("New password again").fill("a-brand-new-password")
    page.get_by_role("button", name="Change password").click()
    page.get_by_role("status").wait_for()
    assert "Your password is changed" in page.get_by_role("status").inner_text()
    shot(page, "password-changed")
    assert notes_api.get("/api/notes", tokens["access_token"]).status_code == 401
    auth.login(("alice", "a-brand-new-password"))


def test_keyboard_only_sign_in_to_the_account_page(auth, new_context, shot):
    page = new_context().new_page()
    page.goto(f"{auth.url}/account")
    # The username field has the focus on arrival (autofocus) or is the first Tab stop (a
    # headless page may not be focused itself); Tab and Enter do the rest.
    if page.evaluate("document.activeElement.id") != "username":
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "username"
    page.keyboard.type(ALICE[0])
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "password"
    page.keyboard.type(ALICE[1])
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Sign in"
    shot(page, "focus-on-sign-in")
    page.keyboard.press("Enter")
    page.get_by_text("Signed in as").wait_for()
    # From the top of the page, the first stop is the page's own sign-out button.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Sign out of this page"
    shot(page, "keyboard-signed-in")


def test_consent_screen_allow_and_deny_for_a_third_party_app(auth, new_context, shot):
    context = new_context()
    page = context.new_page()
    request, _ = sign_in_with_app(
        auth, page, PARTNER, PARTNER_REDIRECT, scope="notes:read notes:write"
    )
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Allow Partner Notes to use your account?").wait_for()
    scopes = page.get_by_role("list", name="What the app asks for").inner_text()
    assert "Read your notes" in scopes and "Create, change and delete your notes" in scopes
    shot(page, "consent")
    for cookie in context.cookies():
        assert cookie["httpOnly"], cookie["name"]
    location = redirect_to_app(page, page.get_by_role("button", name="Deny").click)
    assert location.startswith(PARTNER_REDIRECT + "?")
    denied = query_of(location)
    assert denied["error"] == "access_denied" and denied["state"] == request["state"]
    assert denied["iss"] == auth.url and "code" not in denied

    page = context.new_page()  # the first one is on its way to the (absent) app
    request, verifier = sign_in_with_app(
        auth, page, PARTNER, PARTNER_REDIRECT, scope="notes:read notes:write"
    )
    page.get_by_role("button", name="Sign in").click()
    location = redirect_to_app(page, page.get_by_role("button", name="Allow").click)
    assert query_of(location)["state"] == request["state"]
    tokens = exchange(auth, location, verifier, PARTNER, PARTNER_REDIRECT)
    assert tokens["scope"] == "notes:read notes:write"

    account = new_context().new_page()
    open_account(auth, account)
    apps = account.get_by_role("list", name="Apps with access")
    assert "Partner Notes" in apps.inner_text() and "Read your notes" in apps.inner_text()
    shot(account, "apps")
    account.get_by_role("button", name="Remove access of Partner Notes").click()
    account.get_by_role("status").wait_for()
    assert not auth.is_active(tokens["access_token"])
    assert not auth.is_active(tokens["refresh_token"])
