"""Audit trail: one row per security event, written in the same transaction as the change it
describes. Details name tokens by `jti` or fingerprint, never by value.

Once that transaction commits (and only then: a rolled-back change did not happen), the event
is mirrored to the `tessera.audit` log and handed to the listeners subscribed to the app's
AuditTrail, which is how metrics count tokens issued, reuse detected and revocations. Each app
has its own trail, hooked at app creation on the sessions that app makes (create_app), so two
apps in one process share neither listeners nor events.
"""

from __future__ import annotations

import json
import logging
import weakref
from collections.abc import Callable
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from auth_server.models import AuditEvent

log = logging.getLogger("tessera.audit")

Listener = Callable[[str, dict], None]
# Called inside `session.commit()`, before the transaction commits, with the events it records.
CommitListener = Callable[[Session, list[str]], None]
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
    row, fields = event_row(
        event, actor=actor, at=at, user_id=user_id, client_id=client_id, ip=ip, **detail
    )
    session.add(AuditEvent(**row))
    session.info.setdefault(_PENDING, []).append((session.get_bind(), event, fields))


def event_row(
    event: str,
    *,
    actor: str,
    at: int,
    user_id: int | None = None,
    client_id: str | None = None,
    ip: str | None = None,
    **detail,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The audit_events row of an event (its columns) and the fields it is published with.

    `record` adds the row to a session; a path that writes without one (the lean
    client_credentials grant, auth_server/protocol/client_credentials.py) inserts the same
    row itself and hands the fields to AuditTrail.publish once it has committed."""
    if event not in EVENTS:
        raise ValueError(f"unknown audit event {event!r}")
    row = {
        "at": at,
        "event": event,
        "actor": actor,
        "user_id": user_id,
        "client_id": client_id,
        "ip": ip,
        "detail": json.dumps(detail, sort_keys=True),
    }
    fields = {"actor": actor, "client_id": client_id, "user_id": user_id, "ip": ip, **detail}
    return row, fields


class AuditTrail:
    """The audit events one app commits through its engine, logged and handed to its listeners.

    Flask-SQLAlchemy's db.session is one scoped session for every app of the process, so the
    events a session holds are sorted by the engine they were recorded on (`record` notes it):
    each trail takes its own and leaves the others'.
    """

    def __init__(self, engine: Engine):
        self.engine = engine
        self._listeners: list[Listener] = []
        self._committing: list[CommitListener] = []

    def subscribe(self, listener: Listener) -> None:
        """Call `listener(event, fields)` for every audit event this app commits."""
        self._listeners.append(listener)

    def subscribe_before_commit(self, listener: CommitListener) -> None:
        """Call `listener(session, events)` in every transaction of this app that records audit
        events, as it commits: what it executes is part of that transaction, after the rest."""
        self._committing.append(listener)

    def watch(self, sessions: Any) -> None:
        """Publish what commits through `sessions` (a Session, sessionmaker or scoped_session).

        The hooks hold the trail weakly: a shared session factory must not keep a finished
        app (its engine and pool) alive.
        """
        trail = weakref.ref(self)

        def published(session: Session) -> None:
            live = trail()
            if live is not None:
                live._publish(session)

        def discarded(session: Session) -> None:
            live = trail()
            if live is not None:
                live._discard(session)

        def committing(session: Session) -> None:
            live = trail()
            if live is not None:
                live._before_commit(session)

        sa_event.listen(sessions, "before_commit", committing)
        sa_event.listen(sessions, "after_commit", published)
        sa_event.listen(sessions, "after_rollback", discarded)

    def _take_own(self, session: Session) -> list[tuple[str, dict]]:
        pending = session.info.get(_PENDING)
        if not pending:
            return []
        own = [(event, fields) for engine, event, fields in pending if engine is self.engine]
        if own:
            pending[:] = [entry for entry in pending if entry[0] is not self.engine]
        if not pending:
            session.info.pop(_PENDING, None)
        return own

    def _before_commit(self, session: Session) -> None:
        if not self._committing:
            return
        pending = session.info.get(_PENDING)
        events = [event for engine, event, _ in pending or () if engine is self.engine]
        if events:
            for listener in self._committing:
                listener(session, events)

    def _publish(self, session: Session) -> None:
        for event, fields in self._take_own(session):
            self.publish(event, fields)

    def publish(self, event: str, fields: dict) -> None:
        """Log and hand on one event whose row has committed (see `event_row`)."""
        log.info(event, extra={"audit": {"event": event, **fields}})
        for listener in self._listeners:
            try:
                listener(event, fields)
            except Exception:  # noqa: BLE001 - a metrics bug must not fail a committed request
                log.exception("audit listener failed")

    def _discard(self, session: Session) -> None:
        # A rolled-back change did not happen: its events are dropped, never published.
        self._take_own(session)
