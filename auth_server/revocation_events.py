"""Publishes a revocation event (shared/protocol/revocation_events.py) for every committed
revocation.

It listens to committed audit events (the app's AuditTrail): every revoking operation already
writes one in its own transaction, and the listeners run inside `session.commit()`, so the
event is out after the commit and before the view answers, with no hook at the call sites.

A failed publish is logged and counted (`tessera_revocation_events_total{result=
"failed"}`) and the call still answers as it would have: the revocation is committed and
introspection already says so; a resource server that missed the event is stale for at most
its INTROSPECTION_CACHE_TTL (docs/revocation-events.md, "Staleness bound and failure modes").
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis
from sqlalchemy import select
from sqlalchemy.engine import Engine

from auth_server.models import User
from shared.protocol import revocation_events as events

log = logging.getLogger("tessera.revocation_events")

# `users disable` writes user_disabled and user_tokens_revoked (reason user_disabled): one event.
_USER_EVENTS = frozenset({"password_changed", "user_tokens_revoked"})
_FAMILY_EVENTS = frozenset({"refresh_token_reuse_detected", "authorization_code_reuse_detected"})


class RevocationPublisher:
    def __init__(
        self,
        redis_url: str,
        channel: str,
        issuer: str,
        engine: Engine,
        *,
        timeout: float,
        clock: Callable[[], float],
        on_publish: Callable[[str], None] = lambda _result: None,
    ) -> None:
        self.channel = channel
        self.issuer = issuer
        self._engine = engine
        self._clock = clock
        self._on_publish = on_publish
        self._redis = redis.Redis.from_url(
            redis_url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=30,
        )

    def on_audit_event(self, event: str, fields: dict) -> None:
        for target, reason in self._targets(event, fields):
            self.publish(target, reason)

    def publish(self, target: events.Target, reason: str) -> None:
        body = events.encode(events.build(self.issuer, target, reason, int(self._clock())))
        try:
            receivers = self._redis.publish(self.channel, body)
        except redis.RedisError as exc:
            log.error(
                "revocation event not published (%s %s, %s): %s; resource servers with a "
                "cache accept the revoked tokens for up to their INTROSPECTION_CACHE_TTL",
                target[0],
                _loggable(target),
                reason,
                type(exc).__name__,
            )
            self._on_publish("failed")
            return
        log.info(
            "revocation event published (%s %s, %s) to %s subscribers",
            target[0],
            _loggable(target),
            reason,
            receivers,
        )
        self._on_publish("published")

    def close(self) -> None:
        self._redis.close()

    def _targets(self, event: str, fields: dict) -> list[tuple[events.Target, str]]:
        if event == "token_revoked":
            if fields.get("token_use") == "refresh_token" and fields.get("family") is not None:
                return [((events.SESSION, str(fields["family"])), "logout")]
            if fields.get("jti"):
                return [((events.TOKEN, fields["jti"]), "revoked_by_client")]
        elif event in _USER_EVENTS and fields.get("user_id") is not None:
            subject = self._subject(fields["user_id"])
            if subject is not None:
                return [((events.USER, subject), fields.get("reason") or event)]
        elif event == "client_disabled" and fields.get("client_id"):
            return [((events.CLIENT, fields["client_id"]), "client_disabled")]
        elif event in _FAMILY_EVENTS and fields.get("family") is not None:
            if event == "refresh_token_reuse_detected" or fields.get("family_revoked"):
                return [((events.SESSION, str(fields["family"])), event)]
        elif event == "signing_key_rotated" and fields.get("retired"):
            return [((events.SIGNING_KEY, fields["retired"]), "signing_key_retired")]
        return []

    def _subject(self, user_pk: int) -> str | None:
        # The audit event names the user by primary key; resource servers know the `sub`.
        with self._engine.connect() as connection:
            return connection.scalar(select(User.subject).where(User.id == user_pk))


def _loggable(target: events.Target) -> str:
    # Every value an event names is an identifier, never a secret; a jti is what logs use.
    return target[1]
