"""The account page, /account: the user signs in (throttled like every password check), sees
the apps signed in to the account, signs one or all of them out, changes the password, withdraws
a third-party app's access, and reads the account's recent security events.

Server-rendered, no JavaScript. Every change is a POST carrying the session's CSRF token,
answered with a 303 back to /account (a reload never repeats it). The session is its own
signed cookie (auth_server/account_session.py). No token ever appears in the page or a URL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypeVar

from flask import Blueprint, Response, current_app, redirect, render_template, request
from werkzeug.wrappers import Response as BaseResponse

from auth_server import consent, logins
from auth_server.account_session import ACCOUNT_SESSION_SECONDS, AccountCookie, AccountSession
from auth_server.accounts import AccountError, WrongPasswordError
from auth_server.db import db, rolled_back_on_error
from auth_server.endpoints.forms import FORM_TYPE
from auth_server.models import CLIENT_ID_PATTERN, User
from auth_server.passwords import PasswordHashingBusy
from auth_server.protocol.errors import TooManyRequestsError
from shared.protocol.oauth_syntax import NO_STORE

bp = Blueprint("account_page", __name__)
_AnyResponse = TypeVar("_AnyResponse", bound=BaseResponse)

SIGNED_OUT_EVERYWHERE = "signed_out_everywhere"
# What a redirect back to /account may say; the query names one of these, never free text.
NOTICES = {
    "signed-out": "You have signed out of this page.",
    "login-signed-out": "That session is signed out. The app will ask to sign in again.",
    "login-gone": "That session had already ended.",
    "everywhere": "Every app and device is signed out. This page stays signed in.",
    "password": "Your password is changed, and every other session is signed out.",
    "app-removed": "The app no longer has access, and its sessions are signed out.",
    "app-gone": "That app had no access any more.",
}
_PAGE_HEADERS = {
    **NO_STORE,
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; "
        "base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@bp.after_request
def _protect(response: Response) -> Response:
    response.headers.update(_PAGE_HEADERS)
    return response


@bp.app_template_filter("when")
def _when(epoch_seconds: int) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%d %b %Y, %H:%M UTC")


@bp.app_template_filter("iso")
def _iso(epoch_seconds: int) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat()


class _Visit:
    """The account session of this request and the user it is signed in as, if any."""

    def __init__(self) -> None:
        self.components = current_app.extensions["tessera"]
        self.now = self.components.now()
        self.cookie = AccountCookie(
            current_app.config["SECRET_KEY"],
            secure=self.components.settings.auth_issuer.startswith("https://"),
        )
        loaded = self.cookie.load(request.cookies.get(self.cookie.name))
        self.session = loaded or AccountSession.anonymous(self.now)
        self.user: User | None = None
        self.ended = False
        user_id = self.session.user_for(self.now)
        if user_id is not None:
            user = db.session.get(User, user_id)
            if user is not None and not user.disabled and user.token_epoch == self.session.epoch:
                self.user = user
        if self.user is None and self.session.user_id is not None:
            # Expired, or ended by a revocation: signed out, but the form token stays valid so
            # the sign-in form that follows works.
            self.ended = True
            self.session = AccountSession(self.session.csrf, self.now)

    @property
    def ip(self) -> str | None:
        return request.remote_addr

    @property
    def signed_in_user(self) -> User:
        """The user, once signed_in_problem() (or a check of `user`) has said there is one."""
        assert self.user is not None
        return self.user

    def respond(self, response: _AnyResponse) -> _AnyResponse:
        self.cookie.set_on(response, self.session)
        return response

    def page(self, template: str, status: int = 200, **values) -> Response:
        html = render_template(template, csrf_token=self.session.csrf, **values)
        return self.respond(Response(html, status, mimetype="text/html"))

    def back(self, notice: str | None = None) -> BaseResponse:
        return self.respond(redirect(f"/account?notice={notice}" if notice else "/account", 303))

    def form_problem(self) -> Response | None:
        """A page refusing the POST if it is not the page's own form; None if it is."""
        # A body that is not a form carries no CSRF token either.
        presented = request.form.get("csrf_token") if request.mimetype == FORM_TYPE else None
        if not self.session.csrf_valid(presented, self.now):
            return self.page(
                "account_message.html",
                400,
                message="This form has expired or did not come from this page. "
                "Open your account page and try again.",
            )
        return None

    def signed_in_problem(self) -> Response | None:
        problem = self.form_problem()
        if problem is None and self.user is None:
            return self.sign_in_page(403, error="Your session has ended. Sign in again.")
        return problem

    def sign_in_page(self, status: int = 200, error: str | None = None, username: str = ""):
        return self.page("account_sign_in.html", status, error=error, username=username)

    def account_page(self, status: int = 200, password_error: str | None = None) -> Response:
        user = self.signed_in_user
        # Signed in, so the session has its sign-in time.
        assert self.session.signed_in_at is not None
        return self.page(
            "account.html",
            status,
            username=user.username,
            notice=NOTICES.get(request.args.get("notice", "")),
            logins=logins.active_logins(db.session, user.id, self.now),
            apps=[
                (app, [consent.describe_scope(s) for s in app.scopes])
                for app in consent.app_accesses(db.session, user.id)
            ],
            events=logins.recent_events(db.session, user.id),
            password_error=password_error,
            session_ends=self.session.signed_in_at + ACCOUNT_SESSION_SECONDS,
        )


@bp.get("/account")
def show():
    visit = _Visit()
    if visit.user is None:
        error = "Your session has ended. Sign in again." if visit.ended else None
        return visit.sign_in_page(error=error)
    return visit.account_page()


@bp.post("/account/sign-in")
def sign_in():
    visit = _Visit()
    problem = visit.form_problem()
    if problem is not None:
        return problem
    username = request.form.get("username", "")
    password = request.form.get("password", "")
    if not username or not password:
        return visit.sign_in_page(400, "Enter your username and password.", username)
    components = visit.components
    accounts = components.accounts()
    try:
        with (
            components.passwords.slot(),
            components.login_throttle.attempt(username, visit.ip) as check,
            rolled_back_on_error(accounts.session),
        ):
            user = accounts.authenticate(username, password, client_id=None, ip=visit.ip)
            if user is not None:
                check.succeeded()
                accounts.session.commit()
    except TooManyRequestsError as error:
        response = visit.sign_in_page(429, "Too many failed sign-ins. Try again later.", username)
        response.headers["Retry-After"] = str(error.retry_after)
        return response
    except PasswordHashingBusy as busy:
        components.metrics.count_password_hashing_busy()
        response = visit.sign_in_page(503, "Too many sign-ins right now. Try again in a moment.")
        response.headers["Retry-After"] = str(busy.retry_after)
        return response
    if user is None:
        return visit.sign_in_page(400, "The username or password is incorrect.", username)
    visit.session = visit.session.signed_in(user.id, user.token_epoch, visit.now)
    return visit.back()


@bp.post("/account/sign-out")
def sign_out():
    visit = _Visit()
    problem = visit.form_problem()
    if problem is not None:
        return problem
    visit.session = AccountSession.anonymous(visit.now)
    return visit.back("signed-out")


@bp.post("/account/logins/<int:family_id>/sign-out")
def sign_out_login(family_id: int):
    visit = _Visit()
    problem = visit.signed_in_problem()
    if problem is not None:
        return problem
    done = logins.sign_out_login(db.session, visit.signed_in_user, family_id, visit.now, visit.ip)
    return visit.back("login-signed-out" if done else "login-gone")


@bp.post("/account/sign-out-everywhere")
def sign_out_everywhere():
    visit = _Visit()
    problem = visit.signed_in_problem()
    if problem is not None:
        return problem
    user = visit.signed_in_user
    visit.components.accounts().revoke_tokens(
        user, actor=f"user:{user.subject}", reason=SIGNED_OUT_EVERYWHERE
    )
    return _keep_this_page(visit, "everywhere")


@bp.post("/account/change-password")
def change_password():
    visit = _Visit()
    problem = visit.signed_in_problem()
    if problem is not None:
        return problem
    form = request.form
    current, new = form.get("current_password", ""), form.get("new_password", "")
    if not current or not new:
        return visit.account_page(400, "Enter your current password and a new one.")
    if new != form.get("confirm_password"):
        return visit.account_page(400, "The new password and its confirmation differ.")
    components = visit.components
    accounts = components.accounts()
    username = visit.signed_in_user.username
    wrong = policy = None
    try:
        with (
            components.passwords.slot(),
            components.login_throttle.attempt(username, visit.ip) as check,
            rolled_back_on_error(accounts.session),
        ):
            try:
                accounts.change_password(username, current, new, ip=visit.ip)
            except WrongPasswordError as exc:
                wrong = exc
            except AccountError as exc:
                check.succeeded()
                policy = exc
            else:
                check.succeeded()
    except TooManyRequestsError as error:
        response = visit.account_page(429, "Too many wrong passwords. Try again later.")
        response.headers["Retry-After"] = str(error.retry_after)
        return response
    except PasswordHashingBusy as busy:
        components.metrics.count_password_hashing_busy()
        response = visit.account_page(503, "The server is busy. Try again in a moment.")
        response.headers["Retry-After"] = str(busy.retry_after)
        return response
    if wrong is not None or policy is not None:
        db.session.rollback()
        return visit.account_page(400, str(wrong or policy))
    return _keep_this_page(visit, "password")


@bp.post("/account/apps/<client_id>/withdraw")
def withdraw_app(client_id: str):
    visit = _Visit()
    problem = visit.signed_in_problem()
    if problem is not None:
        return problem
    # Never looked up unless it can be a client_id (a NUL byte would be a database error).
    valid = CLIENT_ID_PATTERN.match(client_id) is not None
    done = valid and consent.withdraw(
        db.session, visit.signed_in_user, client_id, visit.now, visit.ip
    )
    return _keep_this_page(visit, "app-removed" if done else "app-gone")


def _keep_this_page(visit: _Visit, notice: str) -> BaseResponse:
    """After a revocation moved the user's epoch, this browser's page session follows it (the
    others end)."""
    db.session.expire_all()
    user = db.session.get(User, visit.session.user_id)
    assert user is not None  # the signed-in user, whose own request this is
    visit.session = visit.session.with_epoch(user.token_epoch)
    return visit.back(notice)
