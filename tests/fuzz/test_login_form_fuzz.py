"""The HTML login form of /oauth/authorize, posted with anything: any field values, a missing,
wrong or altered CSRF token, other content types, extra and repeated fields. It never answers
5xx, and it logs a user in (a redirect with a code) exactly when the form carries the page's
CSRF token and that user's right password."""

from __future__ import annotations

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.hypothesis_settings import bounded
from tests.support import (
    ALICE,
    BOB,
    Browser,
    code_request,
    csrf_token,
    form_action,
    pkce_pair,
    query_of,
)

pytestmark = pytest.mark.slow

USERS = {ALICE[0]: ALICE[1], BOB[0]: BOB[1]}
TEXT = st.text(max_size=40)

credentials = st.one_of(
    st.sampled_from([ALICE, BOB]),
    st.tuples(st.sampled_from([ALICE[0], BOB[0], "", "ALICE", "alice "]), TEXT),
    st.tuples(TEXT, st.sampled_from([ALICE[1], BOB[1], ""])),
    st.tuples(TEXT, TEXT),
)
csrf_variants = st.sampled_from(
    ["right", "right", "missing", "empty", "other", "right-plus", "right-truncated", "repeated"]
)
content_types = st.sampled_from(["form", "form", "form", "multipart", "json", "text", "none"])
extra_fields = st.lists(st.tuples(TEXT, TEXT), max_size=3)


def _csrf_field(variant: str, right: str) -> list[tuple[str, str]]:
    return {
        "right": [("csrf_token", right)],
        "missing": [],
        "empty": [("csrf_token", "")],
        "other": [("csrf_token", "x" * len(right))],
        "right-plus": [("csrf_token", right + "A")],
        "right-truncated": [("csrf_token", right[:-1])],
        "repeated": [("csrf_token", "wrong"), ("csrf_token", right)],
    }[variant]


def _post(browser: Browser, url: str, fields: list[tuple[str, str]], content_type: str):
    kwargs: dict = {"allow_redirects": False, "timeout": 10}
    if content_type == "form":
        kwargs["data"] = fields
    elif content_type == "multipart":
        kwargs["files"] = [(name, (None, value)) for name, value in fields]
    elif content_type == "json":
        kwargs["json"] = dict(fields)
    elif content_type == "text":
        kwargs["data"] = "&".join(f"{k}={v}" for k, v in fields).encode()
        kwargs["headers"] = {"Content-Type": "text/plain"}
    else:
        kwargs["data"] = "&".join(f"{k}={v}" for k, v in fields).encode()
    return browser.http.post(url, **kwargs)


def test_login_form_never_5xx_and_logs_in_only_with_the_right_credentials(auth):
    _, challenge = pkce_pair()
    outcomes: dict[str, int] = {}

    @bounded()
    @given(
        user=credentials,
        csrf=csrf_variants,
        content_type=content_types,
        extra=extra_fields,
    )
    def attempt(user, csrf, content_type, extra):
        browser = Browser(auth, http=requests.Session())
        page = browser.authorize(**code_request(challenge=challenge))
        assert page.status_code == 200, page.text
        fields = [
            *_csrf_field(csrf, csrf_token(page.text)),
            ("username", user[0]),
            ("password", user[1]),
            *extra,
        ]
        response = _post(browser, auth.url + form_action(page.text), fields, content_type)
        assert response.status_code < 500, response.text
        logged_in = response.status_code in (302, 303) and "code" in query_of(
            response.headers.get("Location", "")
        )
        # What the server saw: the first value of each field, as Flask reads a form.
        first = {}
        for name, value in fields:
            first.setdefault(name, value)
        right = (
            csrf == "right"
            and content_type == "form"
            and first["username"] == user[0]
            and first["password"] == user[1]
            and USERS.get(user[0]) == user[1]
        )
        outcome = "logged in" if logged_in else str(response.status_code)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        assert logged_in == right, (csrf, content_type, user, response.status_code)

    attempt()
    print(f"\nlogin form: {outcomes}")
    assert outcomes.get("logged in"), "no attempt logged in: the fuzzer never reached success"
