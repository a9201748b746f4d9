"""Password change for first-party apps: the same trust as the password grant (the client
authenticates, the user proves the current password), and every token of the user is revoked."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from auth_server.accounts import AccountError, WrongPasswordError
from auth_server.db import rolled_back_on_error
from auth_server.endpoints.forms import require_form
from auth_server.protocol.errors import (
    InvalidGrantError,
    InvalidRequestError,
    UnauthorizedClientError,
)
from auth_server.protocol.grants import CLIENT_AUTH_METHODS
from shared.protocol.oauth_syntax import NO_STORE

bp = Blueprint("account", __name__)


@bp.post("/account/password")
def change_password():
    require_form()
    components = current_app.extensions["tessera"]
    server = components.server
    oauth_request = server.create_oauth2_request(None)
    client = server.authenticate_client(oauth_request, CLIENT_AUTH_METHODS)
    if not client.check_grant_type("password"):
        raise UnauthorizedClientError("Only first-party clients (password grant) may do this.")
    form = oauth_request.form
    username = form.get("username")
    current, new = form.get("current_password"), form.get("new_password")
    if not username or current is None or not new:
        raise InvalidRequestError(
            "The username, current_password and new_password parameters are required."
        )
    ip = oauth_request.client_ip
    # The same counters as every login: a wrong current password is a failed login.
    wrong_password = None
    accounts = components.accounts()
    with (
        components.passwords.slot(),
        components.login_throttle.attempt(username, ip) as check,
        rolled_back_on_error(accounts.session),
    ):
        try:
            families, access = accounts.change_password(username, current, new, ip=ip)
        except WrongPasswordError as exc:
            wrong_password = exc
        except AccountError as exc:
            # The current password was right; the new one breaks the policy.
            check.succeeded()
            raise InvalidRequestError(str(exc)) from exc
        else:
            check.succeeded()
    if wrong_password is not None:
        raise InvalidGrantError(str(wrong_password))
    response = jsonify(revoked_logins=families, revoked_access_tokens=access)
    response.headers.update(NO_STORE)
    return response
