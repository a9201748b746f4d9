"""Housekeeping: delete what can no longer matter, in small batches so it never blocks traffic."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from auth_server.keys import purge_retired_keys
from auth_server.models import (
    AccessToken,
    AuditEvent,
    AuthorizationCode,
    DPoPProofSeen,
    LoginAttempt,
    RefreshFamily,
    RefreshToken,
    RevokedAccessToken,
)
from shared.service.database import affected_rows


def _delete_in_batches(session: Session, model, key, condition, batch_size: int) -> int:
    total = 0
    while True:
        ids = select(key).where(condition).limit(batch_size).scalar_subquery()
        deleted = affected_rows(
            session.execute(
                delete(model).where(key.in_(ids)).execution_options(synchronize_session=False)
            )
        )
        session.commit()
        total += deleted or 0
        if not deleted or deleted < batch_size:
            return total


def purge_expired(
    session: Session,
    now: int,
    audit_retention_seconds: int,
    batch_size: int = 1000,
    *,
    refresh_token_idle_ttl: int = 0,
) -> dict[str, int]:
    """Rows past expiry: access tokens, families past their absolute lifetime (with their
    refresh tokens and authorization codes), never-used refresh tokens and authorization codes
    past their expiry, login-throttle counters of past windows, old audit events, retired keys
    and DPoP proofs too old to be accepted anyway. Consumed refresh tokens and codes of live
    families stay: they are what reuse detection recognises. A refresh token past its own expiry
    stays while its login was active within `refresh_token_idle_ttl` (sliding expiration,
    activity.py): it still refreshes."""
    counts = {}
    counts["access_tokens"] = _delete_in_batches(
        session, AccessToken, AccessToken.jti, AccessToken.expires_at <= now, batch_size
    )
    # A revoked self-contained token past its expiry is refused for its `exp` alone.
    counts["revoked_access_tokens"] = _delete_in_batches(
        session,
        RevokedAccessToken,
        RevokedAccessToken.jti,
        RevokedAccessToken.expires_at <= now,
        batch_size,
    )
    dead_families = select(RefreshFamily.id).where(RefreshFamily.expires_at <= now)
    counts["refresh_tokens"] = _delete_in_batches(
        session,
        RefreshToken,
        RefreshToken.id,
        RefreshToken.family_id.in_(dead_families)
        | (
            (RefreshToken.expires_at <= now)
            & RefreshToken.consumed_at.is_(None)
            & RefreshToken.family_id.in_(
                select(RefreshFamily.id).where(
                    RefreshFamily.last_active_at <= now - refresh_token_idle_ttl
                )
            )
        ),
        batch_size,
    )
    counts["authorization_codes"] = _delete_in_batches(
        session,
        AuthorizationCode,
        AuthorizationCode.id,
        AuthorizationCode.family_id.in_(dead_families)
        | ((AuthorizationCode.expires_at <= now) & AuthorizationCode.family_id.is_(None)),
        batch_size,
    )
    # Access tokens of those families expired long ago (their TTL is minutes), so none remain.
    counts["refresh_families"] = _delete_in_batches(
        session,
        RefreshFamily,
        RefreshFamily.id,
        (RefreshFamily.expires_at <= now)
        & ~RefreshFamily.id.in_(
            select(AccessToken.family_id).where(AccessToken.family_id.is_not(None))
        ),
        batch_size,
    )
    counts["audit_events"] = _delete_in_batches(
        session,
        AuditEvent,
        AuditEvent.id,
        AuditEvent.at <= now - audit_retention_seconds,
        batch_size,
    )
    counts["login_attempts"] = _delete_in_batches(
        session,
        LoginAttempt,
        LoginAttempt.expires_at,
        LoginAttempt.expires_at <= now,
        batch_size,
    )
    counts["dpop_proofs_seen"] = _delete_in_batches(
        session,
        DPoPProofSeen,
        DPoPProofSeen.proof_hash,
        DPoPProofSeen.expires_at < now,
        batch_size,
    )
    counts["signing_keys"] = purge_retired_keys(session, now)
    session.commit()
    return counts
