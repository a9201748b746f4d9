"""RFC 6749 §3.2 token endpoint: authorization_code, password, client_credentials, refresh_token.

A request with a `DPoP` header (RFC 9449) has its proof checked here, before any grant runs;
the grants read the proven key from the OAuth request (server.py) and bind what they issue.
"""

from __future__ import annotations

from flask import Blueprint, current_app, g, request

from auth_server.endpoints.forms import require_form
from auth_server.protocol.errors import InvalidRequestError

bp = Blueprint("token", __name__)


@bp.post("/oauth/token")
def token():
    # RFC 8707 §2: `resource` may be given several times; nothing else may.
    require_form(repeatable=frozenset({"resource"}))
    if not request.form.get("grant_type"):
        # RFC 6749 §5.2: a missing required parameter is invalid_request, not an unknown grant.
        raise InvalidRequestError("The grant_type parameter is required.")
    components = current_app.extensions["tessera"]
    now = components.now()
    g.dpop_proof = components.dpop.check(
        request.headers.getlist("DPoP"),
        request.method,
        components.settings.auth_issuer + request.path,
        now,
    )
    response = components.server.create_token_response()
    response.headers.update(components.dpop.nonce_header(now))
    return response
