"""Tessera Notes (examples/demo_web) and the authorization server's login page, in Chromium:
the sign-in a person does, and where the tokens never go (cookies readable by script, web
storage, URLs, pages)."""

from __future__ import annotations

import re
import time

import pytest

from tests.demo_web.support import DemoWebApp, start_demo_web, stored_tokens
from tests.support import ALICE, FakeClock, start_auth_server, start_resource_server

NOTE = "Buy milk for the tea party"


def wait_for_focus(page, element_id: str, timeout: float = 10.0) -> None:
    """Until the element `element_id` has the focus. Polled from here: Playwright's
    wait_for_function polls inside the page with eval, which the pages' Content Security
    Policy (default-src 'none') forbids, so it failed whenever its first check came too early."""
    deadline = time.monotonic() + timeout
    while page.evaluate("document.activeElement ? document.activeElement.id : null") != element_id:
        assert time.monotonic() < deadline, f"#{element_id} never got the focus"
        time.sleep(0.02)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def auth(serve, make_database_url, clock):
    return start_auth_server(serve, make_database_url("auth"), clock=clock)


@pytest.fixture
def demo_web(serve, make_database_url, auth, tmp_path) -> DemoWebApp:
    notes_api = start_resource_server(serve, make_database_url("notes"), auth)
    return start_demo_web(serve, auth, notes_api, tmp_path)


class Recorder:
    """Every URL the page's frames navigate to and every document it received."""

    def __init__(self, page) -> None:
        self.urls: list[str] = []
        self.documents: list[str] = []
        page.on("framenavigated", lambda frame: self.urls.append(frame.url))
        page.on("request", lambda req: self.urls.append(req.url))
        page.on("response", self._response)

    def _response(self, response) -> None:
        if response.request.resource_type == "document" and response.status < 300:
            self.documents.append(response.text())


def sign_in(page, demo_web, shot=None, password=ALICE[1]) -> None:
    page.goto(demo_web.url + "/")
    if shot:
        shot(page, "1-signed-out")
    page.get_by_role("link", name="Sign in").click()
    # The login page with its stylesheet (the load event waits for it: a busy machine is slow).
    page.wait_for_load_state("load")
    page.get_by_label("Username").fill(ALICE[0])
    page.get_by_label("Password").fill(password)
    if shot:
        shot(page, "2-login-page")
    # /static/tessera.css loaded under the login page's CSP: the button is the brand blue.
    background = "getComputedStyle(document.querySelector('button')).backgroundColor"
    assert page.evaluate(background) == "rgb(51, 70, 200)"
    page.get_by_role("button", name="Sign in").click()


def add_note(page, text: str) -> None:
    page.get_by_label("New note").fill(text)
    page.get_by_role("button", name="Add note").click()
    page.get_by_role("listitem").filter(has_text=text).wait_for()


def test_sign_in_and_add_a_note_without_a_token_reaching_the_browser(demo_web, new_context, shot):
    context = new_context()
    page = context.new_page()
    seen = Recorder(page)
    console = []
    page.on("console", lambda message: console.append(message.text))
    sign_in(page, demo_web, shot)
    page.get_by_role("heading", name="Your notes").wait_for()
    assert page.url == demo_web.url + "/"
    assert page.get_by_text("Signed in as alice").is_visible()
    add_note(page, NOTE)
    shot(page, "3-notes")
    assert page.get_by_role("listitem").all_inner_texts() == [NOTE]
    # Neither site's pages break their own Content-Security-Policy.
    assert not [text for text in console if "Content Security Policy" in text]

    (tokens,) = stored_tokens(demo_web)
    secrets = [tokens["access_token"], tokens["refresh_token"]]
    assert page.evaluate("document.cookie") == ""
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0
    cookies = context.cookies()
    assert cookies and all(cookie["httpOnly"] for cookie in cookies)
    assert all(secret not in cookie["value"] for cookie in cookies for secret in secrets)
    assert len(seen.urls) > 5 and len(seen.documents) >= 3
    for secret in secrets:
        assert not [url for url in seen.urls if secret in url]
        assert not [html for html in seen.documents if secret in html]
        assert secret not in page.content()
    # No JWT-shaped string anywhere the browser was (the access token is a JWT).
    jwt = re.compile(r"eyJ[\w-]+\.eyJ[\w-]+\.")
    assert not [text for text in seen.urls + seen.documents if jwt.search(text)]


def test_an_expired_access_token_is_refreshed_and_a_dead_login_asks_to_sign_in_again(
    demo_web, auth, clock, new_context, shot
):
    page = new_context().new_page()
    sign_in(page, demo_web)
    add_note(page, NOTE)
    (before,) = stored_tokens(demo_web)

    clock.advance(auth.settings.access_token_ttl + 1)
    assert not auth.is_active(before["access_token"])
    page.reload()
    assert page.get_by_role("listitem").all_inner_texts() == [NOTE]
    (after,) = stored_tokens(demo_web)
    assert after["access_token"] != before["access_token"]
    assert after["refresh_token"] != before["refresh_token"]

    # The login revoked at the server: the refresh gets invalid_grant.
    with auth.app.app_context():
        accounts = auth.app.extensions["tessera"].accounts()
        from auth_server.store import find_user

        accounts.revoke_tokens(
            find_user(accounts.session, ALICE[0]), actor="test", reason="operator_revoked"
        )
    page.reload()
    page.get_by_role("link", name="Sign in").wait_for()
    assert page.get_by_role("status").inner_text().startswith("Your session has ended")
    shot(page, "session-ended")
    assert stored_tokens(demo_web) == []
    assert "demo_session" not in {cookie["name"] for cookie in page.context.cookies()}


def test_sign_out_revokes_the_refresh_token_at_the_authorization_server(
    demo_web, auth, new_context
):
    page = new_context().new_page()
    sign_in(page, demo_web)
    page.get_by_role("heading", name="Your notes").wait_for()
    (tokens,) = stored_tokens(demo_web)
    assert auth.is_active(tokens["refresh_token"])

    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("link", name="Sign in").wait_for()
    assert not auth.is_active(tokens["refresh_token"])
    assert not auth.is_active(tokens["access_token"])
    assert demo_web.sessions.count() == 0
    page.goto(demo_web.url + "/")
    assert page.get_by_role("link", name="Sign in").is_visible()


def test_sign_in_with_the_keyboard_only(demo_web, new_context, shot):
    page = new_context().new_page()
    page.goto(demo_web.url + "/")
    focused = None
    for _ in range(5):
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.textContent.trim()")
        if focused == "Sign in":
            break
    assert focused == "Sign in"
    page.keyboard.press("Enter")
    # The login page puts the caret in Username; Tab goes on to Password, then the button.
    page.get_by_label("Username").wait_for()
    # autofocus applies once the document has loaded; wait for it, then for the caret
    page.wait_for_load_state("load")
    wait_for_focus(page, "username")
    page.keyboard.type(ALICE[0])
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "password"
    page.keyboard.type(ALICE[1])
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent.trim()") == "Sign in"
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Your notes").wait_for()
    for _ in range(5):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "new-note":
            break
    assert page.evaluate("document.activeElement.id") == "new-note"
    page.keyboard.type(NOTE)
    page.keyboard.press("Enter")
    page.get_by_role("listitem").filter(has_text=NOTE).wait_for()
    shot(page, "after-keyboard-sign-in")


def test_a_wrong_password_shows_a_clear_error_and_signs_nobody_in(demo_web, new_context, shot):
    page = new_context().new_page()
    sign_in(page, demo_web, password="not-the-password")
    alert = page.get_by_role("alert")
    assert alert.inner_text() == "The username or password is incorrect."
    assert page.get_by_label("Username").input_value() == ALICE[0]
    assert page.get_by_label("Password").get_attribute("aria-invalid") == "true"
    # The caret goes back to the field to correct (autofocus, once the page has loaded).
    wait_for_focus(page, "password")
    shot(page, "login-error")
    assert stored_tokens(demo_web) == []


def test_a_sign_in_response_this_browser_did_not_ask_for_shows_a_problem_page(
    demo_web, new_context, shot
):
    page = new_context().new_page()
    page.goto(demo_web.url + "/callback?code=planted-code&state=planted-state")
    assert page.get_by_role("heading", name="Something went wrong").is_visible()
    assert "was not started here" in page.get_by_role("alert").inner_text()
    shot(page, "problem")
    page.get_by_role("link", name="Back to Tessera Notes").click()
    assert page.get_by_role("link", name="Sign in").is_visible()
    assert stored_tokens(demo_web) == []
