"""Audit trail: one row per security event, written in the same transaction as the change it
describes, and mirrored to the log. Details name tokens by `jti` or fingerprint, never by value."""

from __future__ import annotations

import json
import logging

from sqlalchemy.orm import Session

from auth_server.models import AuditEvent

log = logging.getLogger("tessera.audit")

# The events an operator can rely on finding (README "Operate it" lists them).
EVENTS = frozenset(
    {
        "login_succeeded",
        "login_failed",
        "login_throttled",
        "token_issued",
        "token_refreshed",
        "refresh_token_reuse_detected",
        "token_revoked",
        "user_tokens_revoked",
        "password_changed",
        "user_created",
        "user_disabled",
        "client_created",
        "signing_key_rotated",
    }
)


def record(
    session: Session,
    event: str,
    *,
    actor: str,
    at: int,
    user_id: int | None = None,
    client_id: str | None = None,
    ip: str | None = None,
    **detail,
) -> None:
    if event not in EVENTS:
        raise ValueError(f"unknown audit event {event!r}")
    session.add(
        AuditEvent(
            at=at,
            event=event,
            actor=actor,
            user_id=user_id,
            client_id=client_id,
            ip=ip,
            detail=json.dumps(detail, sort_keys=True),
        )
    )
    log.info(
        event,
        extra={"audit": {"event": event, "actor": actor, "client_id": client_id, **detail}},
    )
