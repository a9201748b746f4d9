"""The account page over HTTP: its session cookie, every form's CSRF check, session expiry, the
login throttle, and what signing out one login, everywhere, or changing the password revokes."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html import unescape

import pytest
import requests
from sqlalchemy import select

from auth_server.account_session import (
    ACCOUNT_SESSION_SECONDS,
    COOKIE_NAME,
    SECURE_COOKIE_NAME,
    AccountCookie,
    AccountSession,
)
from auth_server.db import db
from auth_server.models import RefreshFamily, User
from tests.support import ALICE, BOB, FakeClock, start_auth_server

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


@dataclass
class AccountBrowser:
    """A user agent on /account with its own cookie jar; never follows redirects."""

    auth: object
    http: requests.Session = field(default_factory=requests.Session)
    page: requests.Response | None = None

    def open(self) -> requests.Response:
        self.page = self.http.get(f"{self.auth.url}/account", timeout=10)
        return self.page

    def follow(self, redirect: requests.Response) -> requests.Response:
        assert redirect.status_code == 303, redirect.text
        self.page = self.http.get(self.auth.url + redirect.headers["Location"], timeout=10)
        return self.page

    def csrf(self) -> str:
        return unescape(re.search(r'name="csrf_token" value="([^"]*)"', self.page.text).group(1))

    def post(self, path: str, csrf: str | None = "page", **form) -> requests.Response:
        if csrf == "page":
            csrf = self.csrf()
        if csrf is not None:
            form["csrf_token"] = csrf
        return self.http.post(
            f"{self.auth.url}{path}", data=form, allow_redirects=False, timeout=10
        )

    def sign_in(self, user=ALICE) -> requests.Response:
        self.open()
        response = self.post("/account/sign-in", username=user[0], password=user[1])
        assert response.status_code == 303, response.text
        assert self.open().status_code == 200
        return response


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def auth(serve, make_database_url, clock):
    return start_auth_server(
        serve,
        make_database_url("auth"),
        clock=clock,
        login_failures_per_username_and_ip="3 per 5 minutes",
    )


def app_login(auth, user=ALICE) -> dict:
    response = auth.http.post(
        f"{auth.url}/oauth/token",
        data={"grant_type": "password", "username": user[0], "password": user[1]},
        auth=("demo-app", "demo-app-secret"),
        headers={"User-Agent": FIREFOX},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()


def family_ids(auth, user=ALICE) -> list[int]:
    with auth.app.app_context():
        user_id = db.session.scalar(select(User.id).where(User.username == user[0]))
        return db.session.scalars(
            select(RefreshFamily.id)
            .where(RefreshFamily.user_id == user_id)
            .order_by(RefreshFamily.id)
        ).all()


def alive(auth, tokens: dict) -> tuple[bool, bool]:
    return auth.is_active(tokens["access_token"]), auth.is_active(tokens["refresh_token"])


def test_sign_in_gives_a_short_httponly_session_and_lists_each_login_with_ip_and_browser(auth):
    tokens = app_login(auth)
    browser = AccountBrowser(auth)
    first = browser.open()
    assert first.status_code == 200
    assert first.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in first.headers["Content-Security-Policy"]
    assert 'type="password"' in first.text and "<script" not in first.text

    signed_in = browser.post("/account/sign-in", username="alice", password="wonderland")
    assert signed_in.status_code == 303 and signed_in.headers["Location"].endswith("/account")
    cookie = signed_in.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}=")  # http issuer: no __Host- prefix possible
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie

    page = browser.open()
    assert "Signed in as <strong>alice</strong>" in page.text
    assert "demo-app" in page.text
    assert "Firefox on Linux · 127.0.0.1" in page.text
    # No token, nor anything derived from one, is ever in the page.
    assert tokens["access_token"] not in page.text
    assert tokens["refresh_token"] not in page.text
    assert "Signed in to this account page" in page.text  # the security events


def test_the_cookie_over_https_is_host_prefixed_and_secure():
    cookie = AccountCookie("s" * 40, secure=True)
    assert cookie.name == SECURE_COOKIE_NAME == "__Host-tessera_account"
    session = AccountSession.anonymous(1000).signed_in(7, 3, 1000)
    assert cookie.load(cookie.dump(session)) == session
    forged = cookie.dump(session)[:-2] + "xx"
    assert cookie.load(forged) is None
    assert AccountCookie("t" * 40, secure=True).load(cookie.dump(session)) is None


FORMS = [
    ("/account/sign-out-everywhere", {}),
    ("/account/logins/{family}/sign-out", {}),
    (
        "/account/change-password",
        {
            "current_password": "wonderland",
            "new_password": "a-new-password-1",
            "confirm_password": "a-new-password-1",
        },
    ),
    ("/account/apps/spa-app/withdraw", {}),
    ("/account/sign-out", {}),
]


@pytest.mark.parametrize("csrf", [None, "wrong-token"], ids=["missing", "wrong"])
@pytest.mark.parametrize("path,form", FORMS, ids=[p for p, _ in FORMS])
def test_every_form_refuses_a_missing_or_wrong_csrf_token_and_changes_nothing(
    auth, path, form, csrf
):
    tokens = app_login(auth)
    browser = AccountBrowser(auth)
    browser.sign_in()
    path = path.format(family=family_ids(auth)[0])
    response = browser.post(path, csrf=csrf, **form)
    assert response.status_code == 400
    assert "did not come from this page" in response.text
    assert alive(auth, tokens) == (True, True)
    auth.login(ALICE)  # the password did not change
    assert "Signed in as" in browser.open().text  # still signed in to the page


def test_sign_in_refuses_a_missing_csrf_token(auth):
    browser = AccountBrowser(auth)
    browser.open()
    response = browser.post("/account/sign-in", csrf=None, username="alice", password="wonderland")
    assert response.status_code == 400
    assert "Signed in as" not in browser.open().text


def test_a_form_that_is_not_form_encoded_is_refused(auth):
    browser = AccountBrowser(auth)
    browser.sign_in()
    response = browser.http.post(
        f"{auth.url}/account/sign-out-everywhere", json={"csrf_token": browser.csrf()}, timeout=10
    )
    assert response.status_code == 400


def test_sign_out_one_login_revokes_it_and_its_access_token_only(auth):
    first, second = app_login(auth), app_login(auth)
    browser = AccountBrowser(auth)
    browser.sign_in()
    family = family_ids(auth)[0]
    response = browser.post(f"/account/logins/{family}/sign-out")
    assert response.status_code == 303
    assert alive(auth, first) == (False, False)
    assert alive(auth, second) == (True, True)
    assert auth.refresh(first["refresh_token"]).status_code == 400
    page = browser.follow(response)
    assert "That session is signed out" in page.text
    assert "Signed out of demo-app from this page" in page.text


def test_a_user_cannot_sign_out_another_users_login(auth):
    bobs = app_login(auth, BOB)
    browser = AccountBrowser(auth)
    browser.sign_in(ALICE)
    response = browser.post(f"/account/logins/{family_ids(auth, BOB)[0]}/sign-out")
    assert "That session had already ended" in browser.follow(response).text
    assert alive(auth, bobs) == (True, True)


def test_sign_out_everywhere_revokes_every_token_and_ends_other_browsers_pages(auth):
    tokens = [app_login(auth), app_login(auth)]
    bobs = app_login(auth, BOB)
    here, elsewhere = AccountBrowser(auth), AccountBrowser(auth)
    here.sign_in()
    elsewhere.sign_in()

    done = here.post("/account/sign-out-everywhere")
    for pair in tokens:
        assert alive(auth, pair) == (False, False)
    assert alive(auth, bobs) == (True, True)
    page = here.follow(done)
    assert "Every app and device is signed out" in page.text  # this page stays signed in
    assert "No app is signed in" in page.text
    other = elsewhere.open()
    assert "Your session has ended" in other.text and "Signed in as" not in other.text
    assert "Signed out everywhere" in page.text


def test_the_page_session_ends_after_fifteen_minutes_and_then_changes_nothing(auth, clock):
    tokens = app_login(auth)
    browser = AccountBrowser(auth)
    browser.sign_in()
    clock.advance(ACCOUNT_SESSION_SECONDS - 1)
    assert "Signed in as" in browser.open().text
    clock.advance(1)
    response = browser.post("/account/sign-out-everywhere")
    assert response.status_code == 403
    assert "Your session has ended" in response.text
    # (the access token has expired by now on its own; the login is what must survive)
    assert auth.is_active(tokens["refresh_token"])
    assert auth.refresh(tokens["refresh_token"]).status_code == 200
    assert "Signed in as" not in browser.open().text


def test_change_password_signs_out_every_other_session_and_keeps_this_page(auth):
    tokens = app_login(auth)
    browser = AccountBrowser(auth)
    browser.sign_in()
    new = "a-new-password-1"
    response = browser.post(
        "/account/change-password",
        current_password="wonderland",
        new_password=new,
        confirm_password=new,
    )
    assert alive(auth, tokens) == (False, False)
    page = browser.follow(response)
    assert "Your password is changed" in page.text
    assert "Password changed; every session was signed out" in page.text
    auth.login(("alice", new))


@pytest.mark.parametrize(
    "current,new,confirm,message",
    [
        ("not-the-password", "a-new-password-1", "a-new-password-1", "incorrect"),
        ("wonderland", "a-new-password-1", "another-password-2", "differ"),
        ("wonderland", "short", "short", "at least"),
    ],
    ids=["wrong-current", "confirmation-differs", "policy"],
)
def test_a_refused_password_change_changes_nothing(auth, current, new, confirm, message):
    tokens = app_login(auth)
    browser = AccountBrowser(auth)
    browser.sign_in()
    response = browser.post(
        "/account/change-password",
        current_password=current,
        new_password=new,
        confirm_password=confirm,
    )
    assert response.status_code == 400
    assert message in response.text
    assert alive(auth, tokens) == (True, True)
    auth.login(ALICE)


def test_sign_in_is_throttled_like_every_password_check(auth):
    browser = AccountBrowser(auth)
    browser.open()
    for _ in range(3):
        wrong = browser.post("/account/sign-in", username="alice", password="wrong-password")
        assert wrong.status_code == 400
        assert "incorrect" in wrong.text
    refused = browser.post("/account/sign-in", username="alice", password="wonderland")
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 0
    assert "Signed in as" not in browser.open().text
    AccountBrowser(auth).sign_in(BOB)  # another user at the same address is not locked out


def test_failed_sign_ins_show_as_security_events(auth):
    browser = AccountBrowser(auth)
    browser.open()
    browser.post("/account/sign-in", username="alice", password="wrong-password")
    browser.sign_in()
    page = browser.open().text
    assert "Failed sign-in to this account page: wrong password" in page


def test_revocations_from_the_page_are_counted_with_their_reason(auth):
    app_login(auth)
    browser = AccountBrowser(auth)
    browser.sign_in()
    browser.post(f"/account/logins/{family_ids(auth)[0]}/sign-out")
    browser.open()
    browser.post("/account/sign-out-everywhere")
    registry = auth.app.extensions["tessera"].metrics.registry
    for kind, reason in (("family", "signed_out_by_user"), ("user", "signed_out_everywhere")):
        labels = {"kind": kind, "reason": reason}
        assert registry.get_sample_value("tessera_revocations_total", labels) == 1


@pytest.mark.parametrize(
    "path",
    [
        "/account/logins/99999999999999999999999/sign-out",
        "/account/logins/0/sign-out",
        "/account/apps/%00bad/withdraw",
        "/account/apps/" + "x" * 300 + "/withdraw",
    ],
    ids=["huge-id", "zero-id", "nul-client", "long-client"],
)
def test_malformed_targets_are_answered_without_changing_anything(auth, path):
    tokens = app_login(auth)
    browser = AccountBrowser(auth)
    browser.sign_in()
    response = browser.post(path)
    assert response.status_code in (303, 404)
    assert alive(auth, tokens) == (True, True)


@pytest.mark.parametrize(
    "username,password",
    [
        ("al%00ice", "wonderland"),
        ("alice", "wonder%00land"),
        ("%ff%fe", "wonderland"),
        ("a" * 5000, "wonderland"),
    ],
    ids=["nul-username", "nul-password", "not-utf8", "long-username"],
)
def test_malformed_sign_ins_are_refused_with_a_4xx(auth, username, password):
    browser = AccountBrowser(auth)
    browser.open()
    response = browser.http.post(
        f"{auth.url}/account/sign-in",
        data=f"csrf_token={browser.csrf()}&username={username}&password={password}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        allow_redirects=False,
        timeout=10,
    )
    assert 400 <= response.status_code < 500
    assert "Signed in as" not in browser.open().text


def test_wrong_current_passwords_are_throttled_like_sign_ins(auth, clock):
    tokens = app_login(auth)
    browser = AccountBrowser(auth)
    browser.sign_in()
    form = dict(
        current_password="wrong-password", new_password="n-e-w-pass", confirm_password="n-e-w-pass"
    )
    for _ in range(3):
        assert browser.post("/account/change-password", **form).status_code == 400
    refused = browser.post("/account/change-password", **{**form, "current_password": ALICE[1]})
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 0
    assert alive(auth, tokens) == (True, True)
    clock.advance(5 * 60)  # the next window
    auth.login(ALICE)  # the password did not change


def test_a_replayed_refresh_token_shows_as_a_security_event(auth):
    tokens = app_login(auth)
    assert auth.refresh(tokens["refresh_token"]).status_code == 200
    assert auth.refresh(tokens["refresh_token"]).status_code == 400  # reuse: family revoked
    browser = AccountBrowser(auth)
    browser.sign_in()
    assert "A copied session of demo-app was used" in browser.page.text
    assert "No app is signed in" in browser.page.text


def test_behind_https_the_cookie_is_host_prefixed_secure_and_host_only(serve, make_database_url):
    server = start_auth_server(
        serve, make_database_url("auth"), auth_issuer="https://login.example.com"
    )
    page = requests.get(f"{server.url}/account", timeout=10)
    cookie = page.headers["Set-Cookie"]
    assert cookie.startswith(f"{SECURE_COOKIE_NAME}=")
    attributes = [a.strip().lower() for a in cookie.split(";")[1:]]
    assert {"secure", "httponly", "path=/", "samesite=lax"} <= set(attributes)
    assert not any(a.startswith("domain=") for a in attributes)
