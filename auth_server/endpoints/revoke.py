"""RFC 7009 token revocation. Revoking a refresh token is logout: its whole family goes."""

from __future__ import annotations

from authlib.consts import default_json_headers
from authlib.oauth2.rfc7009 import RevocationEndpoint as _RevocationEndpoint
from flask import Blueprint, current_app

from auth_server import audit
from auth_server.db import db
from auth_server.endpoints.forms import MAX_TOKEN_LENGTH, require_form, token_parameter
from auth_server.grants import PUBLIC_CLIENT_AUTH_METHODS
from auth_server.revocation import revoke_access_token, revoke_family
from auth_server.store import find_token
from shared.digests import sha256_hex

bp = Blueprint("revoke", __name__)


class RevocationEndpoint(_RevocationEndpoint):
    # Public clients (browser apps) log out too: RFC 7009 §2.1 authenticates them by client_id.
    CLIENT_AUTH_METHODS = PUBLIC_CLIENT_AUTH_METHODS

    def create_endpoint_response(self, request):
        client = self.authenticate_endpoint_client(request)
        token = token_parameter()
        # RFC 7009 §2.1: the hint MAY be ignored; we search every type whatever it says.
        hint = request.form.get("token_type_hint")
        record = None
        if len(token) <= MAX_TOKEN_LENGTH:
            record = find_token(db.session, sha256_hex(token), hint)
        # RFC 7009 §2.2: an invalid or unknown token is not an error (200). A token issued to
        # another client (§2.1) is not revoked, and gets the very same answer: anyone can
        # name a public client, so any other answer would tell a thief whether a stolen
        # token is live.
        if record is None or record.client_pk != client.id:
            return 200, {}, default_json_headers
        now = self.server.components.now()
        if record.kind == "refresh_token":
            # RFC 7009 §2.1: revoking a refresh token also invalidates its access tokens.
            changed = revoke_family(db.session, record.family_id, "revoked_by_client", now)
        else:
            changed = revoke_access_token(db.session, record.jti, now)
        if changed:
            audit.record(
                db.session,
                "token_revoked",
                actor=f"client:{client.client_id}",
                at=now,
                user_id=record.user_pk,
                client_id=client.client_id,
                ip=getattr(request, "client_ip", None),
                token_use=record.kind,
                jti=record.jti,
                family=record.family_id,
            )
        db.session.commit()
        return 200, {}, default_json_headers


@bp.post("/oauth/revoke")
def revoke():
    require_form()
    return current_app.extensions["tessera"].server.create_endpoint_response(
        RevocationEndpoint.ENDPOINT_NAME
    )
