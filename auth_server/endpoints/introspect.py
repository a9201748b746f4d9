"""RFC 7662 token introspection, for resource servers (clients with `can_introspect`), each
about the access tokens for the audiences it serves (its client registration's `audiences`).

This is the hot path: every protected request at every resource server ends here, so it is one
client check (a SHA-256 compare) and one indexed lookup joined with its family.
"""

from __future__ import annotations

from collections.abc import Sequence

from authlib.consts import default_json_headers
from authlib.oauth2.rfc7662 import IntrospectionEndpoint as _IntrospectionEndpoint
from flask import Blueprint, current_app

from auth_server.activity import record_login_activity
from auth_server.db import db
from auth_server.endpoints.forms import require_form, token_parameter
from auth_server.errors import InvalidClientError
from auth_server.grants import CLIENT_AUTH_METHODS
from auth_server.store import TokenRecord, find_access_token
from shared.protocol.digests import sha256_hex
from shared.protocol.oauth_syntax import MAX_TOKEN_LENGTH

bp = Blueprint("introspect", __name__)
INACTIVE = {"active": False}


class IntrospectionEndpoint(_IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def create_endpoint_response(self, request):
        client = self.authenticate_endpoint_client(request)
        if not client.can_introspect:
            # RFC 7662 §2.3: a caller without the privilege gets 401.
            raise InvalidClientError(
                description="This client is not allowed to introspect tokens.", status_code=401
            )
        token = token_parameter()
        # Only access tokens are looked up: a refresh token is for the authorization server
        # alone and is never active to a resource server (RFC 7662 §4). So any
        # token_type_hint (RFC 7662 §2.1: it only orders the search) changes nothing.
        record = None
        if len(token) <= MAX_TOKEN_LENGTH:
            record = find_access_token(db.session, sha256_hex(token))
        return 200, self._payload(record, client.audience_list), default_json_headers

    def _payload(self, record: TokenRecord | None, served: Sequence[str]) -> dict:
        components = self.server.components
        # RFC 7662 §2.2: unknown, expired, revoked: exactly {"active": false}, nothing more.
        # §4: a resource server learns only about the access tokens meant for it (an `aud` it
        # serves); any other is inactive to it.
        if (
            record is None
            or not set(record.audience.split()) & set(served)
            or not record.is_active(components.now())
        ):
            components.metrics.introspections.labels("inactive").inc()
            return dict(INACTIVE)
        components.metrics.introspections.labels("active").inc()
        record_login_activity(
            db.session,
            record.family_id,
            record.family_last_active_at,
            components.now(),
            components.settings.refresh_activity_interval,
        )
        audience = record.audience.split()
        payload = {
            "active": True,
            "scope": record.scope,
            "client_id": record.client_id,
            "sub": record.subject,
            "aud": audience[0] if len(audience) == 1 else audience,
            "iss": components.settings.auth_issuer,
            "exp": record.expires_at,
            "iat": record.issued_at,
            "token_use": record.kind,
            "jti": record.jti,
            "token_type": "Bearer",
        }
        if record.username is not None:
            payload["username"] = record.username
        if record.family_id is not None:
            # Non-standard: the login (refresh family) the token belongs to, so a resource
            # server's cache can drop it on a session-revoked event (docs/revocation-events.md).
            payload["sid"] = str(record.family_id)
        if record.dpop_jkt is not None:
            # RFC 9449 §6.2: the key the token is bound to, and its type.
            payload["cnf"] = {"jkt": record.dpop_jkt}
            payload["token_type"] = "DPoP"
        return payload


@bp.post("/oauth/introspect")
def introspect():
    require_form()
    if db.engine.dialect.name == "postgresql":
        # Two reads and nothing to write: autocommit saves the BEGIN and ROLLBACK round trips
        # (a quarter of the time of an introspection). The pool resets it on return.
        db.session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    return current_app.extensions["tessera"].server.create_endpoint_response(
        IntrospectionEndpoint.ENDPOINT_NAME
    )
