"""Revoking tokens: one access token, one refresh family (a login), or everything of a user.

A family's access tokens are not updated one by one: introspection treats a token whose family
is revoked as revoked, so a family revocation is one row, and an access token minted by a
refresh that raced the revocation is dead too (tokens.py locks the family row first).
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from auth_server.models import AccessToken, AuthorizationCode, RefreshFamily


def revoke_family(session: Session, family_id: int, reason: str, now: int) -> bool:
    result = session.execute(
        update(RefreshFamily)
        .where(RefreshFamily.id == family_id, RefreshFamily.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def revoke_access_token(session: Session, jti: str, now: int) -> bool:
    result = session.execute(
        update(AccessToken)
        .where(AccessToken.jti == jti, AccessToken.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def revoke_user_tokens(session: Session, user_id: int, reason: str, now: int) -> tuple[int, int]:
    """Revoke every refresh family and every unexpired access token of a user, and expire the
    authorization codes not yet exchanged (a code issued a second before a password change
    must not start a login after it).

    Returns (families, access tokens) revoked. The caller commits.
    """
    families = session.execute(
        update(RefreshFamily)
        .where(RefreshFamily.user_id == user_id, RefreshFamily.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
        .execution_options(synchronize_session=False)
    )
    tokens = session.execute(
        update(AccessToken)
        .where(
            AccessToken.user_id == user_id,
            AccessToken.revoked_at.is_(None),
            AccessToken.expires_at > now,
        )
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(AuthorizationCode)
        .where(
            AuthorizationCode.user_id == user_id,
            AuthorizationCode.consumed_at.is_(None),
            AuthorizationCode.expires_at > now,
        )
        .values(expires_at=now)
        .execution_options(synchronize_session=False)
    )
    return families.rowcount or 0, tokens.rowcount or 0
