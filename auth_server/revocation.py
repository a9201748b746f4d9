"""Revoking tokens: one access token, one refresh family (a login), everything of a user, or
everything of a client.

A family's access tokens are not updated one by one: introspection treats a token whose family
is revoked as revoked, so a family revocation is one row, and an access token minted by a
refresh that raced the revocation is dead too (tokens.py locks the family row first). Revoking
everything of a user or client first increments its revocation epoch (epochs.py), so a login
that overlaps the revocation cannot leave a token behind it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from auth_server import audit
from auth_server.epochs import Steps, bump_client_epoch, bump_user_epoch, no_steps
from auth_server.models import AccessToken, AuthorizationCode, RefreshFamily, RevokedAccessToken
from auth_server.self_contained import (
    SelfContainedTokens,
    is_self_contained_jti,
    unverified_self_contained_claims,
)
from auth_server.store import TokenRecord, find_token
from shared.protocol.digests import sha256_hex
from shared.service.database import affected_rows


def revoke_family(session: Session, family_id: int, reason: str, now: int) -> bool:
    result = session.execute(
        update(RefreshFamily)
        .where(RefreshFamily.id == family_id, RefreshFamily.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
        .execution_options(synchronize_session=False)
    )
    return affected_rows(result) == 1


def revoke_access_token(session: Session, jti: str, reason: str, now: int) -> bool:
    result = session.execute(
        update(AccessToken)
        .where(AccessToken.jti == jti, AccessToken.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
        .execution_options(synchronize_session=False)
    )
    return affected_rows(result) == 1


def _revoke_where(
    session: Session, family_filter, token_filter, code_filter, reason: str, now: int
):
    families = session.execute(
        update(RefreshFamily)
        .where(family_filter, RefreshFamily.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
        .execution_options(synchronize_session=False)
    )
    tokens = session.execute(
        update(AccessToken)
        .where(token_filter, AccessToken.revoked_at.is_(None), AccessToken.expires_at > now)
        .values(revoked_at=now, revoked_reason=reason)
        .execution_options(synchronize_session=False)
    )
    # Codes not yet exchanged: a code issued a second before the revocation must not start a
    # login after it (the exchange also checks the user's epoch, epochs.py).
    session.execute(
        update(AuthorizationCode)
        .where(
            code_filter,
            AuthorizationCode.consumed_at.is_(None),
            AuthorizationCode.expires_at > now,
        )
        .values(expires_at=now)
        .execution_options(synchronize_session=False)
    )
    return affected_rows(families), affected_rows(tokens)


def revoke_user_tokens(
    session: Session, user_id: int, reason: str, now: int, steps: Steps = no_steps
) -> tuple[int, int]:
    """Increment the user's epoch, then revoke every refresh family and unexpired access token
    of the user and expire the codes not yet exchanged.

    Returns (families, access tokens) revoked. The caller commits.
    """
    bump_user_epoch(session, user_id)
    steps("bumped")
    return _revoke_where(
        session,
        RefreshFamily.user_id == user_id,
        AccessToken.user_id == user_id,
        AuthorizationCode.user_id == user_id,
        reason,
        now,
    )


def revoke_user_client_tokens(
    session: Session, user_id: int, client_pk: int, reason: str, now: int
) -> tuple[int, int]:
    """Every login, access token and pending code of one user at one app (consent withdrawn).

    The user's epoch moves first, as for revoke_user_tokens: a login of this app that overlaps
    the withdrawal is refused rather than left alive (logins of the user's other apps in that
    instant are refused too, and simply sign in again). The caller commits.
    """
    bump_user_epoch(session, user_id)
    return _revoke_where(
        session,
        (RefreshFamily.user_id == user_id) & (RefreshFamily.client_pk == client_pk),
        (AccessToken.user_id == user_id) & (AccessToken.client_pk == client_pk),
        (AuthorizationCode.user_id == user_id) & (AuthorizationCode.client_pk == client_pk),
        reason,
        now,
    )


def revoke_client_tokens(
    session: Session, client_pk: int, reason: str, now: int, steps: Steps = no_steps
) -> tuple[int, int]:
    """The same for every token and code of a client (its own and its users')."""
    bump_client_epoch(session, client_pk)
    steps("bumped")
    return _revoke_where(
        session,
        RefreshFamily.client_pk == client_pk,
        AccessToken.client_pk == client_pk,
        AuthorizationCode.client_pk == client_pk,
        reason,
        now,
    )


@dataclass(frozen=True)
class RevocationResult:
    record: TokenRecord | None
    changed: bool


def revoke_self_contained_token(
    session: Session, record: TokenRecord, reason: str, now: int
) -> bool:
    """A self-contained token (auth_server/self_contained.py) has no row to mark: its jti goes
    into revoked_access_tokens until it expires. False: it was inactive already."""
    if record.revoked:
        return False
    values = {
        "jti": record.jti,
        "client_id": record.client_pk,
        "expires_at": record.expires_at,
        "revoked_at": now,
        "revoked_reason": reason,
    }
    # Two revocations of one token at once: the second inserts nothing and changes nothing.
    insert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = (
        insert(RevokedAccessToken)
        .values(values)
        .on_conflict_do_nothing(index_elements=["jti"])
        .returning(RevokedAccessToken.jti)
    )
    # (an ORM insert's rowcount is not the rows inserted: what it returns is)
    return session.execute(statement).first() is not None


def revoke_presented_token(
    session: Session,
    client_pk: int,
    client_id: str,
    token: str,
    hint: str | None,
    now: int,
    ip: str | None,
    steps: Steps = no_steps,
    self_contained: SelfContainedTokens | None = None,
) -> RevocationResult:
    """RFC 7009 §2.1 for an authenticated client: revoke `token` if it is the client's.

    Revoking a refresh token is logout: its family goes, with every access token of it.
    Returns the record found (None: unknown, which is not an error, §2.2). The caller checks
    that the record belongs to the client before calling with changes (see the endpoint).
    """
    if self_contained is not None and unverified_self_contained_claims(token) is not None:
        record = self_contained.find(session.connection(), token)
    else:
        record = find_token(session, sha256_hex(token), hint)
    steps("read")
    if record is None or record.client_pk != client_pk:
        return RevocationResult(record, False)
    if record.kind == "refresh_token":
        # RFC 7009 §2.1: revoking a refresh token also invalidates its access tokens.
        assert record.family_id is not None  # every refresh token belongs to a family
        changed = revoke_family(session, record.family_id, "revoked_by_client", now)
    elif is_self_contained_jti(record.jti):
        changed = revoke_self_contained_token(session, record, "revoked_by_client", now)
    else:
        assert record.jti is not None  # every access token record has its jti
        changed = revoke_access_token(session, record.jti, "revoked_by_client", now)
    if changed:
        audit.record(
            session,
            "token_revoked",
            actor=f"client:{client_id}",
            at=now,
            user_id=record.user_pk,
            client_id=client_id,
            ip=ip,
            token_use=record.kind,
            jti=record.jti,
            family=record.family_id,
        )
    steps("revoked")
    session.commit()
    return RevocationResult(record, changed)


class RevocationService:
    """Revocation's use cases on one session, as TokenService is issuance's: find the token,
    revoke, audit, commit (the audit listeners publish the event after the commit)."""

    def __init__(
        self,
        session: Session,
        clock: Callable[[], float],
        steps: Steps = no_steps,
        self_contained: SelfContainedTokens | None = None,
    ):
        self.session = session
        self.clock = clock
        self.steps = steps
        self.self_contained = self_contained

    def revoke_presented_token(
        self, client_pk: int, client_id: str, token: str, hint: str | None, ip: str | None
    ) -> RevocationResult:
        return revoke_presented_token(
            self.session,
            client_pk,
            client_id,
            token,
            hint,
            int(self.clock()),
            ip,
            self.steps,
            self.self_contained,
        )
