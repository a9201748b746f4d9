"""RFC 6749 §4.1 authorization endpoint: the browser login of first-party apps.

`GET /oauth/authorize?...` checks the authorization request and shows a login form (a
server-rendered page styled by /static/tessera.css, no JavaScript); the form posts the
username, the password and a CSRF token back to the same URL, and a correct password redirects
the browser to the client's redirect_uri with a code, the state and the issuer. Only
first-party apps are registered, so there is no consent screen: logging in is the decision.
There is no single sign-on session either: every authorization request asks for the password,
so `prompt=none` always gets `login_required`. The only cookie holds the CSRF token of the
form.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, redirect, render_template, request, session
from werkzeug.wrappers import Response as BaseResponse

from auth_server.db import rolled_back_on_error
from auth_server.endpoints.forms import FORM_TYPE
from auth_server.errors import (
    AuthorizationPageError,
    LoginRequiredError,
    OAuth2Error,
    TooManyRequestsError,
)
from auth_server.passwords import PasswordHashingBusy

bp = Blueprint("authorize", __name__)

# How long a login form may stay open before its CSRF token is refused.
LOGIN_FORM_MAX_AGE = 1800
_CSRF = "csrf"
_CSRF_AT = "csrf_at"

_PAGE_HEADERS = {
    # RFC 6749 §10.12 / RFC 9700 §4.16: never cached, never framed (clickjacking).
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
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
        status, _, headers = grant.create_authorization_response(redirect_uri, user)
    except OAuth2Error as error:
        return redirect(grant.error_response_uri(error), _redirect_status())
    # One login per form: going back and posting it again needs a new one.
    session.pop(_CSRF, None)
    session.pop(_CSRF_AT, None)
    return redirect(dict(headers)["Location"], status)


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
