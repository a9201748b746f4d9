"""RFC 6749 §3.2 token endpoint: password, client_credentials and refresh_token grants."""

from __future__ import annotations

from flask import Blueprint, current_app

from auth_server.endpoints.forms import require_form

bp = Blueprint("token", __name__)


@bp.post("/oauth/token")
def token():
    # RFC 8707 §2: `resource` may be given several times; nothing else may.
    require_form(repeatable=frozenset({"resource"}))
    return current_app.extensions["tessera"].server.create_token_response()
