"""The login page as markup and headers: what assistive technology, password managers and the
browser's security checks read (tests/browser/test_demo_web.py uses it in Chromium)."""

from __future__ import annotations

import re

import requests

from tests.support import Browser, code_request, pkce_pair


def _login_page(auth) -> requests.Response:
    page = Browser(auth).authorize(**code_request(challenge=pkce_pair()[1]))
    assert page.status_code == 200, page.text
    return page


def test_the_stylesheet_is_served_from_the_same_origin_as_css(auth):
    page = _login_page(auth)
    (href,) = re.findall(r'<link rel="stylesheet" href="([^"]+)">', page.text)
    assert href == "/static/tessera.css"
    sheet = requests.get(auth.url + href, timeout=10)
    assert sheet.status_code == 200
    assert sheet.headers["Content-Type"].startswith("text/css")
    assert ".card" in sheet.text


def test_the_policy_allows_the_own_stylesheet_and_still_no_script(auth):
    policy = _login_page(auth).headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["style-src"] == "'self'"
    assert "script-src" not in directives


def test_fields_are_labelled_and_tell_password_managers_what_they_hold(auth):
    html = _login_page(auth).text
    assert '<html lang="en">' in html
    assert '<label for="username">Username</label>' in html
    assert '<label for="password">Password</label>' in html
    assert re.search(r'<input id="username"[^>]*autocomplete="username"', html)
    assert re.search(r'<input id="password"[^>]*type="password"[^>]*current-password', html)
    assert '<button type="submit">Sign in</button>' in html
    assert "<script" not in html


def test_a_failed_sign_in_is_announced_and_tied_to_the_fields(auth):
    browser = Browser(auth)
    page = browser.authorize(**code_request(challenge=pkce_pair()[1]))
    answer = browser.submit(page, ("alice", "wrong-password"))
    assert answer.status_code == 200
    html = answer.text
    assert re.search(r'role="alert" id="login-error">The username or password is incorrect.', html)
    assert html.count('aria-describedby="login-error"') == 2
    assert html.count('aria-invalid="true"') == 2
    # The username stays; the caret waits in the password field.
    assert re.search(r'<input id="username"[^>]*value="alice"', html)
    assert re.search(r'<input id="password"[^>]*autofocus', html)
    assert not re.search(r'<input id="username"[^>]*autofocus', html)
