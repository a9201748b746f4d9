"""RFC 7009 token revocation (auth_server/protocol/revocation.py). Revoking a refresh token is
logout: its whole family goes."""

from __future__ import annotations

from flask import Blueprint, current_app

from auth_server.endpoints.forms import require_form
from auth_server.protocol.revocation import RevocationEndpoint

bp = Blueprint("revoke", __name__)


@bp.post("/oauth/revoke")
def revoke():
    require_form()
    return current_app.extensions["tessera"].server.create_endpoint_response(
        RevocationEndpoint.ENDPOINT_NAME
    )
