"""Audit trail: one row per security event, written in the same transaction as the change it
describes. Details name tokens by `jti` or fingerprint, never by value.

Once that transaction commits (and only then: a rolled-back change did not happen), the event
is mirrored to the `tessera.audit` log and handed to the listeners subscribed for the database
engine, which is how metrics count tokens issued, reuse detected and revocations.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from weakref import WeakKeyDictionary

from sqlalchemy import event as sa_event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from auth_server.models import AuditEvent

log = logging.getLogger("tessera.audit")

Listener = Callable[[str, dict], None]
_listeners: WeakKeyDictionary[Engine, list[Listener]] = WeakKeyDictionary()
_PENDING = "tessera_audit_pending"

# The events an operator can rely on finding (README "Operate it" lists them).
EVENTS = frozenset(
    {
        "login_succeeded",
        "login_failed",
        "token_issued",
        "token_refreshed",
        "refresh_token_reuse_detected",
        "authorization_code_reuse_detected",
        "token_revoked",
        "user_tokens_revoked",
        "password_changed",
        "user_created",
        "user_disabled",
        "client_created",
        "client_updated",
        "client_disabled",
        # operator changes without SQL (auth_server/operator_changes.py)
        "client_enabled",
        "client_deleted",
        "user_enabled",
        "client_secret_rotated",
        # An issuance refused because a revocation of its user or client overlapped it.
        "issuance_refused_revoked",
        "signing_key_rotated",
        # A user's Allow for a third-party app, and its withdrawal on the account page.
        "consent_granted",
        "consent_withdrawn",
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
    fields = {"actor": actor, "client_id": client_id, "user_id": user_id, "ip": ip, **detail}
    session.info.setdefault(_PENDING, []).append((session.get_bind(), event, fields))


def subscribe(engine: Engine, listener: Listener) -> None:
    """Call `listener(event, fields)` for every audit event committed through `engine`."""
    _listeners.setdefault(engine, []).append(listener)


@sa_event.listens_for(Session, "after_commit")
def _publish(session: Session) -> None:
    for engine, event, fields in session.info.pop(_PENDING, ()):
        log.info(event, extra={"audit": {"event": event, **fields}})
        for listener in _listeners.get(engine, ()):
            try:
                listener(event, fields)
            except Exception:  # noqa: BLE001 - a metrics bug must not fail a committed request
                log.exception("audit listener failed")


@sa_event.listens_for(Session, "after_rollback")
def _discard(session: Session) -> None:
    session.info.pop(_PENDING, None)
