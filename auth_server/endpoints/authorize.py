"""RFC 6749 §4.1 authorization endpoint: the browser login, and the consent of third-party apps.

`GET /oauth/authorize?...` checks the authorization request and shows a login form (a server-
rendered page styled by /static/tessera.css, no JavaScript); the form posts the username, the
password and a CSRF token back to the same URL. For a first-party app a correct password is the
decision: the browser goes to the client's redirect_uri with a code, the state and the issuer. A
third-party app (clients.third_party) first gets a consent screen naming it and the scopes it
asks for, unless the user already allowed it those scopes (auth_server/consent.py); Deny sends
the browser back with `error=access_denied` (RFC 6749 §4.1.2.1).

There is no single sign-on session: every authorization request asks for the password, so
`prompt=login` is always honoured and `prompt=none` always gets `login_required`.
`prompt=consent` shows the consent screen even when the app was allowed before (OpenID Connect
Core §3.1.2.1). The only cookie holds the CSRF token of the form and, between the password
and the consent screen, who signed in (for this very request, a few minutes at most).
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any, TypeGuard
from urllib.parse import urlencode, urlsplit

from flask import Blueprint, Response, current_app, redirect, render_template, request, session
from werkzeug.wrappers import Response as BaseResponse

from auth_server import consent
from auth_server.db import db, rolled_back_on_error
from auth_server.endpoints.forms import FORM_TYPE
from auth_server.epochs import user_epoch_unchanged
from auth_server.models import User
from auth_server.passwords import PasswordHashingBusy
from auth_server.protocol.errors import (
    AccessDeniedError,
    AuthorizationPageError,
    LoginRequiredError,
    OAuth2Error,
    TooManyRequestsError,
)
from shared.protocol.digests import sha256_hex
from shared.protocol.oauth_syntax import NO_STORE

bp = Blueprint("authorize", __name__)

# How long a login form may stay open before its CSRF token is refused.
LOGIN_FORM_MAX_AGE = 1800
_CSRF = "csrf"
_CSRF_AT = "csrf_at"
# Who signed in, between the password and the consent screen's answer.
_PENDING = "consent_pending"
CONSENT_FORM_MAX_AGE = 600

_PAGE_HEADERS = {
    # RFC 6749 §10.12 / RFC 9700 §4.16: never cached, never framed (clickjacking).
    **NO_STORE,
    "X-Frame-Options": "DENY",
    # No script and no subresource but the same-origin stylesheet. No form-action: browsers
    # apply it to the redirect that follows the form, which goes to the client's redirect_uri.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    # The page's URL holds the authorization request: not for other sites.
    "Referrer-Policy": "no-referrer",
}


@bp.after_request
def _protect(response: Response) -> Response:
    response.headers.update(_PAGE_HEADERS)
    return response


@bp.route("/oauth/authorize", methods=["GET", "POST"])
def authorize():
    components = current_app.extensions["tessera"]
    grant = components.server.authorization_code_grant()
    try:
        redirect_uri = grant.validate_authorization_request()
        if "none" in grant.prompt:
            raise LoginRequiredError("The user must log in; prompt=none cannot be honoured.")
    except AuthorizationPageError as error:
        return _error_page(error.description, error.status_code)
    except OAuth2Error as error:
        return redirect(grant.error_response_uri(error), _redirect_status())
    if request.method != "POST":  # GET, and HEAD
        return _login_form(grant)
    if request.mimetype == FORM_TYPE and "decision" in request.form:
        return _decide(components, grant, redirect_uri)
    return _log_in(components, grant, redirect_uri)


def _log_in(components, grant, redirect_uri: str) -> BaseResponse:
    if request.mimetype != FORM_TYPE:
        return _error_page("The login form was not sent as a form.", 400)
    if not _csrf_valid(components.now(), request.form.get("csrf_token")):
        return _error_page(
            "This login form has expired or did not come from this site. "
            "Go back to the application and sign in again.",
            400,
        )
    username = request.form.get("username", "")
    password = request.form.get("password", "")
    if not username or not password:
        return _login_form(grant, "Enter your username and password.", username)
    client = grant.request.client
    ip = request.remote_addr
    # As the password grant: throttled before any hashing, every failure counted and audited.
    accounts = components.accounts()
    try:
        with (
            components.passwords.slot(),
            components.login_throttle.attempt(username, ip) as check,
            rolled_back_on_error(accounts.session),
        ):
            user = accounts.authenticate(username, password, client_id=client.client_id, ip=ip)
            if user is not None:
                check.succeeded()
    except TooManyRequestsError as error:
        response = _error_page("Too many failed logins. Try again later.", 429)
        response.headers["Retry-After"] = str(error.retry_after)
        return response
    except PasswordHashingBusy as busy:
        components.metrics.count_password_hashing_busy()
        response = _error_page("Too many sign-ins right now. Try again in a moment.", 503)
        response.headers["Retry-After"] = str(busy.retry_after)
        return response
    if user is None:
        return _login_form(grant, "The username or password is incorrect.", username)
    try:
        scope = grant.scope_for(user)
        if "consent" in grant.prompt or (
            client.third_party and not consent.covers(db.session, user.id, client.id, scope)
        ):
            # The login is kept (its audit event); the code waits for the user's answer.
            db.session.commit()
            return _consent_form(components, grant, user, scope)
        return _issue(grant, redirect_uri, user, user.token_epoch)
    except OAuth2Error as error:
        return redirect(grant.error_response_uri(error), _redirect_status())


def _issue(grant, redirect_uri: str, user: User, user_epoch: int) -> BaseResponse:
    status, _, headers = grant.create_authorization_response(redirect_uri, user, user_epoch)
    # One login per form: going back and posting it again needs a new one.
    session.pop(_CSRF, None)
    session.pop(_CSRF_AT, None)
    session.pop(_PENDING, None)
    return redirect(dict(headers)["Location"], status)


def _request_fingerprint() -> str:
    # The consent answers this authorization request and no other (same client, scopes,
    # redirect_uri, state, PKCE challenge).
    # Over the parsed parameters, as the forms' action repeats them: not the raw encoding.
    return sha256_hex(urlencode(list(request.args.items(multi=True))))


def _consent_form(components, grant, user: User, scope: list[str]) -> Response:
    session[_PENDING] = {
        "user": user.id,
        "epoch": user.token_epoch,
        "at": components.now(),
        "request": _request_fingerprint(),
    }
    client = grant.request.client
    return Response(
        render_template(
            "consent.html",
            action=f"{request.path}?{urlencode(list(request.args.items(multi=True)))}",
            client_name=client.name or client.client_id,
            third_party=client.third_party,
            username=user.username,
            scopes=[consent.describe_scope(s) for s in scope],
            redirect_host=urlsplit(grant.redirect_uri).hostname,
            csrf_token=_csrf_token(components.now()),
        ),
        200,
        mimetype="text/html",
    )


def _decide(components, grant, redirect_uri: str) -> BaseResponse:
    """The answer of the consent screen: Allow issues the code (and remembers the Allow of a
    third-party app), Deny sends access_denied back to the client."""
    now = components.now()
    pending = session.get(_PENDING)
    if not _csrf_valid(now, request.form.get("csrf_token")) or not _pending_valid(pending, now):
        return _error_page(
            "This page has expired or did not come from this site. "
            "Go back to the application and sign in again.",
            400,
        )
    decision = request.form.get("decision")
    if decision not in ("allow", "deny"):
        return _error_page("Choose Allow or Deny.", 400)
    user = db.session.get(User, pending["user"])
    session.pop(_PENDING, None)
    try:
        if decision == "deny" or user is None or user.disabled:
            raise AccessDeniedError("The user denied the request.", redirect_uri=redirect_uri)
        client = grant.request.client
        if client.third_party:
            scope = grant.scope_for(user)
            # The user row before the consent row, as a withdrawal takes them (no deadlock);
            # a revocation since the password check ends here.
            if not user_epoch_unchanged(db.session, user.id, pending["epoch"]):
                raise AccessDeniedError(
                    "The user's sessions were signed out meanwhile; sign in again.",
                    redirect_uri=redirect_uri,
                )
            consent.grant(db.session, user, client, scope, now, request.remote_addr)
        # The epoch read with the password: a revocation since then refuses the code.
        return _issue(grant, redirect_uri, user, pending["epoch"])
    except OAuth2Error as error:
        db.session.rollback()
        return redirect(grant.error_response_uri(error), _redirect_status())


def _pending_valid(pending: object, now: int) -> TypeGuard[dict[str, Any]]:
    if not isinstance(pending, dict):
        return False
    fields = (pending.get("user"), pending.get("epoch"), pending.get("at"))
    if not all(type(v) is int for v in fields) or now - pending["at"] > CONSENT_FORM_MAX_AGE:
        return False
    return hmac.compare_digest(str(pending.get("request")), _request_fingerprint())


def _redirect_status() -> int:
    """303 after the login form's POST, so the browser follows with a GET and never re-posts
    the password to the client (RFC 9700 §4.12); 302 answers a GET."""
    return 303 if request.method == "POST" else 302


def _login_form(grant, error: str | None = None, username: str = "") -> Response:
    client = grant.request.client
    response = Response(
        render_template(
            "authorize.html",
            action=f"{request.path}?{urlencode(list(request.args.items(multi=True)))}",
            client_name=client.name or client.client_id,
            csrf_token=_csrf_token(current_app.extensions["tessera"].now()),
            error=error,
            username=username,
        ),
        200,
        mimetype="text/html",
    )
    return response


def _error_page(message: str, status: int) -> Response:
    return Response(
        render_template("authorize_error.html", message=message), status, mimetype="text/html"
    )


def _csrf_token(now: int) -> str:
    """The session's token (synchronizer token pattern), made anew once it is too old."""
    issued = session.get(_CSRF_AT)
    if not session.get(_CSRF) or not isinstance(issued, int) or now - issued > LOGIN_FORM_MAX_AGE:
        session[_CSRF] = secrets.token_urlsafe(32)
        session[_CSRF_AT] = now
    return session[_CSRF]


def _csrf_valid(now: int, presented: str | None) -> bool:
    expected, issued = session.get(_CSRF), session.get(_CSRF_AT)
    if not expected or not presented or not isinstance(issued, int):
        return False
    if now - issued > LOGIN_FORM_MAX_AGE:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode("utf-8", "surrogateescape"))
