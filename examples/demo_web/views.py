"""The pages: thin views over oauth.py and sessions.py."""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
import weakref
from typing import Any

import requests
from flask import Blueprint, Response, current_app, redirect, render_template, request

from examples.demo_web.oauth import (
    CallbackError,
    DemoWebClient,
    PendingLogin,
    authorization_url,
    check_callback,
)
from examples.demo_web.sessions import SessionTokens
from shared.client import LoginRequired, OAuthClientError, TokenEndpointError
from shared.protocol.digests import fingerprint

log = logging.getLogger("tessera.demo_web")

bp = Blueprint("demo_web", __name__)

MAX_NOTE_LENGTH = 10_000
_PAGE_HEADERS = {
    # Every page shows a user's data or a session's state: no cache keeps one.
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # The callback's URL holds the authorization code: no Referer carries it anywhere.
    "Referrer-Policy": "no-referrer",
}
SESSION_ENDED = "Your session has ended. Sign in again to see your notes."


class _SessionLocks:
    """One lock per session in this process: a session's API calls (and so its refreshes) run
    one at a time, so two tabs never present the same refresh token twice (which the
    authorization server takes for theft and answers by revoking the login)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()

    def of(self, session_id: str):
        key = fingerprint(session_id)
        with self._guard:
            lock = self._locks.get(key)
            if lock is None:
                lock = threading.Lock()
                self._locks[key] = lock
            return lock


_locks = _SessionLocks()


@bp.after_request
def _protect(response: Response) -> Response:
    if request.endpoint != "static":
        response.headers.update(_PAGE_HEADERS)
    return response


def _app():
    return current_app.extensions["demo_web"]


def _session_id() -> str | None:
    return request.cookies.get(_app().cookie_name)


def _set_cookie(response: Response, session_id: str) -> Response:
    app = _app()
    response.set_cookie(
        app.cookie_name,
        session_id,
        path="/",
        httponly=True,
        samesite="Lax",
        secure=app.settings.secure_cookies,
    )
    return response


def _clear_cookie(response: Response) -> Response:
    app = _app()
    response.delete_cookie(
        app.cookie_name, path="/", httponly=True, samesite="Lax", secure=app.settings.secure_cookies
    )
    return response


def _client(session_id: str) -> DemoWebClient:
    app = _app()
    return DemoWebClient(
        app.metadata,
        app.settings,
        token_store=SessionTokens(app.sessions, session_id),
        session=app.http,
        clock=app.clock,
    )


def _page(template: str, status: int = 200, **context) -> Response:
    return Response(render_template(template, **context), status, mimetype="text/html")


def _signed_out(notice: str | None = None, status: int = 200) -> Response:
    return _page("signed_out.html", status, notice=notice)


def _notes_url(path: str = "") -> str:
    return _app().settings.demo_web_notes_url.rstrip("/") + "/notes" + path


@bp.get("/")
def index() -> Response:
    session_id = _session_id()
    data = _app().sessions.load(session_id)
    if not data or not data.get("tokens"):
        return _signed_out()
    notice = data.get("notice")
    if notice:
        _app().sessions.update(session_id, notice=None)
    try:
        with _locks.of(session_id):
            answer = _client(session_id).get(_notes_url())
    except LoginRequired:
        return _end_session(session_id, _signed_out(SESSION_ENDED))
    except (OAuthClientError, requests.RequestException) as exc:
        log.warning("notes API or authorization server unreachable: %s", type(exc).__name__)
        return _notes_page(data, [], "The notes service cannot be reached right now.", 503)
    notes = _json(answer).get("notes") if answer.status_code == 200 else None
    if not isinstance(notes, list):
        log.warning("notes API answered %s to GET /notes", answer.status_code)
        return _notes_page(data, [], "The notes service could not list your notes.", 502)
    return _notes_page(data, [n for n in notes if isinstance(n, dict)], notice)


def _json(answer: requests.Response) -> dict:
    try:
        body = answer.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _notes_page(data: dict, notes: list, notice: str | None, status: int = 200) -> Response:
    return _page(
        "notes.html",
        status,
        notes=notes,
        notice=notice,
        username=data.get("username"),
        csrf_token=data.get("csrf"),
    )


@bp.get("/login")
def login() -> Response:
    """Sign in: remember a pending request (state, PKCE verifier) server-side and send the
    browser to the authorization endpoint."""
    app = _app()
    old = _session_id()
    data = app.sessions.load(old)
    if data and data.get("tokens"):
        return redirect("/", 303)
    try:
        metadata = app.metadata.get()
    except (OAuthClientError, requests.RequestException, ValueError) as exc:
        log.warning("authorization server metadata unavailable: %s", type(exc).__name__)
        return _page("problem.html", 503, message="Sign-in is unavailable right now.")
    if old and data is not None:
        app.sessions.delete(old)
    pending = PendingLogin.start(app.clock())
    session_id = app.sessions.create({"pending": pending.to_dict()})
    return _set_cookie(
        redirect(authorization_url(metadata, app.settings, pending), 302), session_id
    )


@bp.get("/callback")
def callback() -> Response:
    app = _app()
    old = _session_id()
    data = app.sessions.load(old) or {}
    pending = PendingLogin.from_dict(data.get("pending"))
    params = {key: request.args.get(key) for key in request.args}
    try:
        # A callback without a live pending request reads nothing but `state`.
        metadata = app.metadata.get() if pending else {}
    except (OAuthClientError, requests.RequestException, ValueError) as exc:
        log.warning("authorization server metadata unavailable: %s", type(exc).__name__)
        return _page("problem.html", 503, message="Sign-in is unavailable right now.")
    try:
        code = check_callback(params, pending, metadata, app.settings.demo_web_issuer, app.clock())
    except CallbackError as error:
        response = _page("problem.html", 400, message=str(error))
        return _end_session(old, response) if pending else response
    # The pending request is used up, whatever happens next: no second callback may use it.
    app.sessions.delete(old)
    # A fresh id for the signed-in session (no session fixation): the pre-login id is dead.
    session_id = app.sessions.create({"csrf": secrets.token_urlsafe(32)})
    client = _client(session_id)
    try:
        client.login_authorization_code(code, app.settings.redirect_uri, pending.code_verifier)
    except (TokenEndpointError, OAuthClientError, requests.RequestException) as exc:
        log.warning("authorization code refused: %s", exc)
        app.sessions.delete(session_id)
        return _clear_cookie(_page("problem.html", 400, message="Sign-in failed. Try again."))
    app.sessions.update(session_id, username=_username(client))
    return _set_cookie(redirect("/", 303), session_id)


def _username(client: DemoWebClient) -> str | None:
    try:
        answer = client.get(_app().settings.demo_web_notes_url.rstrip("/") + "/me")
    except (OAuthClientError, requests.RequestException):
        return None
    if answer.status_code != 200:
        return None
    username = _json(answer).get("username")
    return username if isinstance(username, str) else None


@bp.post("/notes")
def add_note() -> Response:
    session_id, data = _signed_in_form()
    if data is None:
        return _refused_form()
    body = request.form.get("body", "").strip()
    if not body or len(body) > MAX_NOTE_LENGTH:
        _app().sessions.update(session_id, notice=f"A note is 1 to {MAX_NOTE_LENGTH:,} characters.")
        return redirect("/", 303)
    try:
        with _locks.of(session_id):
            answer = _client(session_id).post(_notes_url(), json={"body": body})
    except LoginRequired:
        return _end_session(session_id, _signed_out(SESSION_ENDED))
    except (OAuthClientError, requests.RequestException) as exc:
        log.warning("notes API unreachable: %s", type(exc).__name__)
        answer = None
    if answer is None or answer.status_code != 201:
        _app().sessions.update(session_id, notice="The note could not be saved. Try again.")
    # Post/Redirect/Get: reloading the list never posts the note again.
    return redirect("/", 303)


@bp.post("/logout")
def logout() -> Response:
    session_id, data = _signed_in_form()
    if data is None:
        return _refused_form()
    try:
        with _locks.of(session_id):
            # RFC 7009: revoking the refresh token ends the whole login at the server.
            _client(session_id).logout()
    except (OAuthClientError, requests.RequestException) as exc:
        log.warning("revocation failed; the session is cleared anyway: %s", exc)
    return _end_session(session_id, redirect("/", 303))


def _signed_in_form() -> tuple[str | None, dict | None]:
    """The session of a form post, only when its CSRF token matches (synchronizer token,
    compared in constant time) and it is signed in."""
    if request.mimetype != "application/x-www-form-urlencoded":
        return None, None
    session_id = _session_id()
    data = _app().sessions.load(session_id)
    presented = request.form.get("csrf_token", "")
    expected = (data or {}).get("csrf")
    if not expected or not data.get("tokens"):
        return None, None
    if not hmac.compare_digest(expected.encode(), presented.encode("utf-8", "surrogateescape")):
        return None, None
    return session_id, data


def _refused_form() -> Response:
    return _page(
        "problem.html",
        403,
        message="This form has expired or did not come from this site. Nothing was changed.",
    )


def _end_session(session_id: str | None, response: Response) -> Response:
    if session_id:
        _app().sessions.delete(session_id)
    return _clear_cookie(response)
