"""auth_server/session_cookie.py: the login page's cookie session, opened only when a cookie
came; without one, the empty session is made directly and behaves as Flask's own."""

from __future__ import annotations

from flask import Flask, session
from flask.sessions import SecureCookieSession

from auth_server.session_cookie import CookieSessionOnDemand, _empty_session


def test_the_empty_session_is_what_secure_cookie_session_makes():
    made, flasks = _empty_session(), SecureCookieSession()
    assert type(made) is SecureCookieSession
    assert made == flasks == {}
    assert set(vars(made)) == set(vars(flasks)) == {"on_update"}
    assert (made.modified, made.accessed, made.new) == (False, False, False)
    made["csrf"] = "x"
    assert made.modified
    other = _empty_session()  # each request its own
    assert other == {} and not other.modified


def _app() -> Flask:
    app = Flask(__name__)
    app.secret_key = "s" * 32
    app.session_interface = CookieSessionOnDemand()

    @app.get("/read")
    def read():
        return {"csrf": session.get("csrf")}

    @app.get("/write")
    def write():
        session["csrf"] = "token-1"
        return {}

    return app


def test_a_request_without_a_cookie_gets_a_cookie_only_when_its_session_is_written():
    client = _app().test_client(use_cookies=False)
    untouched = client.get("/read")
    assert untouched.json == {"csrf": None}
    assert "Set-Cookie" not in untouched.headers
    written = client.get("/write")
    cookie = written.headers["Set-Cookie"]
    assert cookie.startswith("session=")
    again = client.get("/read", headers={"Cookie": cookie.split(";")[0]})
    assert again.json == {"csrf": "token-1"}
