"""RFC 7009 token revocation. Revoking a refresh token is logout: its whole family goes."""

from __future__ import annotations

from authlib.consts import default_json_headers
from authlib.oauth2.rfc7009 import RevocationEndpoint as _RevocationEndpoint
from flask import Blueprint, current_app

from auth_server.db import db
from auth_server.endpoints.forms import require_form, token_parameter
from auth_server.grants import PUBLIC_CLIENT_AUTH_METHODS
from auth_server.revocation import revoke_presented_token
from shared.protocol.oauth_syntax import MAX_TOKEN_LENGTH

bp = Blueprint("revoke", __name__)


class RevocationEndpoint(_RevocationEndpoint):
    # Public clients (browser apps) log out too: RFC 7009 §2.1 authenticates them by client_id.
    CLIENT_AUTH_METHODS = PUBLIC_CLIENT_AUTH_METHODS

    def create_endpoint_response(self, request):
        client = self.authenticate_endpoint_client(request)
        token = token_parameter()
        # RFC 7009 §2.1: the hint MAY be ignored; we search every type whatever it says.
        hint = request.form.get("token_type_hint")
        # RFC 7009 §2.2: an invalid or unknown token is not an error (200). A token issued to
        # another client (§2.1) is not revoked, and gets the very same answer: anyone can
        # name a public client, so any other answer would tell a thief whether a stolen
        # token is live.
        if len(token) > MAX_TOKEN_LENGTH:
            return 200, {}, default_json_headers
        components = self.server.components
        revoke_presented_token(
            db.session,
            client.id,
            client.client_id,
            token,
            hint,
            components.now(),
            getattr(request, "client_ip", None),
            components.steps,
        )
        return 200, {}, default_json_headers


@bp.post("/oauth/revoke")
def revoke():
    require_form()
    return current_app.extensions["tessera"].server.create_endpoint_response(
        RevocationEndpoint.ENDPOINT_NAME
    )
