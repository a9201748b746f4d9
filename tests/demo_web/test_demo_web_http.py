"""The demo web app over HTTP (no browser): its session cookie, its CSRF checks and its checks
of the authorization response. tests/browser/test_demo_web.py drives it in Chromium."""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode, urlsplit

import pytest
import requests

from examples.demo_web import create_app
from examples.demo_web.settings import DemoWebSettings
from tests.demo_web.support import stored_tokens
from tests.support import ALICE, Browser, query_of


def _authorized(demo_web, auth) -> tuple[requests.Session, str]:
    """Start signing in at the app and sign in at the AS; returns the browser's session with
    the app and the callback URL the AS sent it to (not yet visited)."""
    http = requests.Session()
    to_as = http.get(demo_web.url + "/login", allow_redirects=False, timeout=10)
    assert to_as.status_code == 302
    browser = Browser(auth)
    page = browser.http.get(to_as.headers["Location"], timeout=10)
    assert page.status_code == 200, page.text
    back = browser.submit(page, ALICE)
    assert back.status_code == 303
    return http, back.headers["Location"]


def _sign_in(demo_web, auth) -> requests.Session:
    http, callback = _authorized(demo_web, auth)
    done = http.get(callback, allow_redirects=False, timeout=10)
    assert done.status_code == 303 and done.headers["Location"] == "/"
    return http


def _csrf(page: requests.Response) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def _notes(demo_web, http) -> list[str]:
    page = http.get(demo_web.url + "/", timeout=10)
    assert page.status_code == 200
    return re.findall(r'<li class="card note">([^<]*)</li>', page.text)


def _tokens(demo_web) -> list[dict]:
    return stored_tokens(demo_web)


def test_sign_in_sets_only_an_opaque_httponly_lax_cookie(demo_web, auth):
    http = _sign_in(demo_web, auth)
    page = http.get(demo_web.url + "/", timeout=10)
    assert page.status_code == 200 and "Add note" in page.text
    (cookie,) = list(http.cookies)
    assert cookie.name == "demo_session" and cookie.path == "/"
    assert cookie.has_nonstandard_attr("HttpOnly")
    assert cookie.get_nonstandard_attr("SameSite") == "Lax"
    (tokens,) = _tokens(demo_web)
    assert tokens["access_token"] not in page.text and cookie.value not in page.text
    assert page.headers["Cache-Control"] == "no-store"
    assert "script-src" not in page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]


def test_signing_in_replaces_the_pre_login_session_id(demo_web, auth):
    """No session fixation: an id planted before sign-in is worth nothing after it."""
    http, callback = _authorized(demo_web, auth)
    before = http.cookies["demo_session"]
    http.get(callback, allow_redirects=False, timeout=10)
    after = http.cookies["demo_session"]
    assert after != before
    assert demo_web.sessions.load(before) is None
    assert demo_web.sessions.load(after)["tokens"]


def test_a_note_posted_with_the_sessions_csrf_token_is_added(demo_web, auth):
    http = _sign_in(demo_web, auth)
    token = _csrf(http.get(demo_web.url + "/", timeout=10))
    answer = http.post(
        demo_web.url + "/notes", data={"csrf_token": token, "body": "tea"}, timeout=10
    )
    assert answer.status_code == 200 and answer.url == demo_web.url + "/"
    assert _notes(demo_web, http) == ["tea"]


@pytest.mark.parametrize("presented", [None, "", "forged-token", "x" * 5000])
def test_a_note_posted_without_the_sessions_csrf_token_is_refused(demo_web, auth, presented):
    http = _sign_in(demo_web, auth)
    form = {"body": "forged note"}
    if presented is not None:
        form["csrf_token"] = presented
    answer = http.post(demo_web.url + "/notes", data=form, allow_redirects=False, timeout=10)
    assert answer.status_code == 403
    assert "expired or did not come from this site" in answer.text
    assert _notes(demo_web, http) == []


def test_another_sessions_csrf_token_is_refused(demo_web, auth):
    mallory = _sign_in(demo_web, auth)
    alice = _sign_in(demo_web, auth)
    mallory_token = _csrf(mallory.get(demo_web.url + "/", timeout=10))
    answer = alice.post(
        demo_web.url + "/notes",
        data={"csrf_token": mallory_token, "body": "forged"},
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 403
    assert _notes(demo_web, alice) == []


def test_a_note_posted_as_json_is_refused(demo_web, auth):
    http = _sign_in(demo_web, auth)
    token = _csrf(http.get(demo_web.url + "/", timeout=10))
    answer = http.post(demo_web.url + "/notes", json={"csrf_token": token, "body": "x"}, timeout=10)
    assert answer.status_code == 403
    assert _notes(demo_web, http) == []


def test_sign_out_without_the_csrf_token_keeps_the_login(demo_web, auth):
    http = _sign_in(demo_web, auth)
    answer = http.post(demo_web.url + "/logout", data={}, allow_redirects=False, timeout=10)
    assert answer.status_code == 403
    (tokens,) = _tokens(demo_web)
    assert auth.is_active(tokens["refresh_token"])
    assert "Add note" in http.get(demo_web.url + "/", timeout=10).text


def test_sign_out_revokes_the_login_and_forgets_the_session(demo_web, auth):
    http = _sign_in(demo_web, auth)
    token = _csrf(http.get(demo_web.url + "/", timeout=10))
    (tokens,) = _tokens(demo_web)
    answer = http.post(
        demo_web.url + "/logout", data={"csrf_token": token}, allow_redirects=False, timeout=10
    )
    assert answer.status_code == 303
    assert "demo_session" not in http.cookies
    assert demo_web.sessions.count() == 0
    assert not auth.is_active(tokens["refresh_token"])


def _tampered(callback: str, **changes) -> str:
    params = query_of(callback)
    params.update(changes)
    params = {k: v for k, v in params.items() if v is not None}
    parts = urlsplit(callback)
    return f"{parts.scheme}://{parts.netloc}{parts.path}?{urlencode(params)}"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"state": "another-state"}, "does not belong to your sign-in"),
        ({"state": None}, "was not started here"),
        ({"iss": "https://evil.example"}, "came from another server"),
        ({"iss": None}, "does not say which server sent it"),
        ({"code": None}, "has no authorization code"),
        ({"code": "not-a-code"}, "Sign-in failed"),
    ],
)
def test_a_callback_that_fails_a_check_signs_nobody_in(demo_web, auth, changes, message):
    http, callback = _authorized(demo_web, auth)
    answer = http.get(_tampered(callback, **changes), allow_redirects=False, timeout=10)
    assert answer.status_code == 400
    assert message in answer.text
    assert _tokens(demo_web) == []
    # The pending sign-in is used up: the genuine response cannot be replayed after it.
    assert http.get(callback, allow_redirects=False, timeout=10).status_code == 400
    assert _tokens(demo_web) == []


def test_a_callback_in_another_browser_signs_nobody_in(demo_web, auth):
    """A response stolen or planted (login CSRF) meets no pending request in that browser."""
    _, callback = _authorized(demo_web, auth)
    answer = requests.get(callback, allow_redirects=False, timeout=10)
    assert answer.status_code == 400
    assert _tokens(demo_web) == []


def test_an_error_response_from_the_authorization_server_is_shown(demo_web, auth):
    http, callback = _authorized(demo_web, auth)
    answer = http.get(
        _tampered(callback, code=None, error="access_denied"), allow_redirects=False, timeout=10
    )
    assert answer.status_code == 400 and "Sign-in was cancelled." in answer.text


def test_over_https_the_cookie_is_host_prefixed_and_secure(auth, tmp_path):
    settings = DemoWebSettings(
        demo_web_url="https://notes.example",
        demo_web_issuer=auth.url,
        demo_web_session_db=str(tmp_path / "sessions.sqlite3"),
    )
    client = create_app(settings).test_client()
    answer = client.get("/login")
    assert answer.status_code == 302
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith("__Host-demo_session=")
    assert "; Secure" in cookie and "; HttpOnly" in cookie and "; Path=/" in cookie
    assert "SameSite=Lax" in cookie and "Domain" not in cookie
    location = query_of(answer.headers["Location"])
    assert location["code_challenge_method"] == "S256"
    assert location["redirect_uri"] == "https://notes.example/callback"


def test_a_session_id_of_any_shape_is_just_signed_out(demo_web):
    for value in ["", "x" * 4000, "\u00e9t\u00e9", "../../etc/passwd"]:
        http = requests.Session()
        http.cookies.set("demo_session", value)
        page = http.get(demo_web.url + "/", timeout=10)
        assert page.status_code == 200 and "Sign in" in page.text


def test_two_tabs_refreshing_one_login_at_once_keep_it(demo_web, auth, clock):
    """Both tabs' calls get 401 invalid_token at once; one refreshes, the other uses its
    result. Presenting the same refresh token twice would be reuse: the AS would revoke the
    login and sign both tabs out."""
    http = _sign_in(demo_web, auth)
    (before,) = _tokens(demo_web)
    clock.advance(auth.settings.access_token_ttl + 1)
    tabs = 4
    barrier = threading.Barrier(tabs)

    def open_tab(_) -> requests.Response:
        tab = requests.Session()
        tab.cookies.update(http.cookies)
        barrier.wait(timeout=10)
        return tab.get(demo_web.url + "/", timeout=20)

    with ThreadPoolExecutor(tabs) as pool:
        pages = list(pool.map(open_tab, range(tabs)))
    assert [page.status_code for page in pages] == [200] * tabs
    assert all("Add note" in page.text for page in pages)
    (after,) = _tokens(demo_web)
    assert after["refresh_token"] != before["refresh_token"]
    assert auth.is_active(after["refresh_token"])


def test_a_body_too_large_is_refused_with_413(demo_web, auth):
    http = _sign_in(demo_web, auth)
    token = _csrf(http.get(demo_web.url + "/", timeout=10))
    answer = http.post(
        demo_web.url + "/notes", data={"csrf_token": token, "body": "x" * 100_000}, timeout=10
    )
    assert answer.status_code == 413
    assert _notes(demo_web, http) == []


def test_a_note_too_long_for_the_notes_api_is_refused_with_a_message(demo_web, auth):
    http = _sign_in(demo_web, auth)
    token = _csrf(http.get(demo_web.url + "/", timeout=10))
    page = http.post(
        demo_web.url + "/notes", data={"csrf_token": token, "body": "x" * 10_001}, timeout=10
    )
    assert page.status_code == 200 and "A note is 1 to 10,000 characters." in page.text
    assert _notes(demo_web, http) == []
    # The message is shown once.
    assert "A note is 1 to" not in http.get(demo_web.url + "/", timeout=10).text


def test_a_callback_while_the_authorization_server_is_down_is_a_503(demo_web, auth):
    """The app restarted during a sign-in (its metadata cache is empty) and the authorization
    server is unreachable when the browser comes back."""
    http = requests.Session()
    http.get(demo_web.url + "/login", allow_redirects=False, timeout=10)
    restarted = create_app(demo_web.settings).test_client()
    restarted.set_cookie("demo_session", http.cookies["demo_session"])
    auth.server.stop()
    answer = restarted.get("/callback?state=x&code=y")
    assert answer.status_code == 503 and "Sign-in is unavailable" in answer.text
