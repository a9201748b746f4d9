"""RFC 7662 token introspection, for resource servers (clients with `can_introspect`), each
about the access tokens for the audiences it serves (its client registration's `audiences`).

This is the hot path: every protected request at every resource server ends here, so the view
only hands the request's parts to auth_server/protocol/introspection.py (a cached client check
and one indexed statement) and counts the answer.
"""

from __future__ import annotations

import logging

from authlib.consts import default_json_headers
from flask import Blueprint, Response, current_app, json, request
from sqlalchemy.exc import SQLAlchemyError

from auth_server import activity
from auth_server.db import db
from auth_server.endpoints.forms import require_form, token_parameter
from auth_server.protocol.introspection import (
    authenticate_introspector,
    introspection_payload,
    look_up_access_token,
    retried_once_if_dropped,
)
from auth_server.store import TokenRecord
from shared.protocol.digests import sha256_hex

log = logging.getLogger(__name__)

bp = Blueprint("introspect", __name__)


@bp.post("/oauth/introspect")
def introspect():
    require_form()
    components = current_app.extensions["tessera"]

    def answer() -> tuple[TokenRecord | None, dict]:
        client = authenticate_introspector(
            request.headers.get("Authorization"),
            request.form,
            lambda client_id, fresh=False: components.clients.find(
                db.session, client_id, fresh=fresh
            ),
        )
        # Only access tokens are looked up: a refresh token is for the authorization server
        # alone and is never active to a resource server (RFC 7662 §4). So any
        # token_type_hint (§2.1: it only orders the search) changes nothing.
        record = look_up_access_token(
            components.reader,
            token_parameter(),
            components.introspection_memory,
            components.self_contained_tokens,
        )
        return record, introspection_payload(
            record, client.audience_list, components.now(), components.settings.auth_issuer
        )

    # The client may be read through the request's session (a cache miss), the token through
    # a pooled connection: either may meet a connection the database dropped. Anything that
    # writes belongs after this call, not in `answer` (it may run twice). For an active user
    # token, `record.family_id` is its login (refresh family) and `record.user_pk` its user.
    record, payload = retried_once_if_dropped(answer, db.session.rollback)
    components.metrics.introspections.labels("active" if payload["active"] else "inactive").inc()
    now, interval = components.now(), components.settings.refresh_activity_interval
    if (
        payload["active"]
        and record is not None
        and record.family_id is not None
        and activity.activity_is_due(record.family_last_active_at, now, interval)
    ):
        # Sliding expiration (auth_server/activity.py): at most one write per login per
        # REFRESH_ACTIVITY_INTERVAL. A failed write costs the login some idle time, never the
        # answer: the resource server's request must not fail over bookkeeping.
        try:
            activity.record_login_activity(
                db.session, record.family_id, record.family_last_active_at, now, interval
            )
        except SQLAlchemyError as exc:
            db.session.rollback()
            log.warning("could not record login activity: %s", exc.__class__.__name__)
        else:
            # Written now, here or by another worker within the interval: what this worker
            # remembers of the token must not make the next introspection try again.
            memory = components.introspection_memory
            if memory is not None:
                memory.note_activity(sha256_hex(token_parameter()), now)
    return Response(json.dumps(payload), 200, default_json_headers)
