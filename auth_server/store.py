"""Lookups by identifier that several modules share: a client by client_id, a user by username,
a token by its hash (with its login, client and user in one query), statements built once.

Queries that belong to one rule live with that rule (grants, tokens, revocation, throttle, ...);
views build no SQL beyond loading a row by primary key (``db.session.get``) and the health
check's ``SELECT 1``."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, aliased

from auth_server.models import (
    CLIENT_ID_PATTERN,
    USERNAME_PATTERN,
    AccessToken,
    Client,
    RefreshFamily,
    RefreshToken,
    User,
)

# Statements on the hot path are built once: SQLAlchemy then reuses their compiled form, and
# building a joined select costs more than running it on an indexed column.
_CLIENT_BY_ID = select(Client).where(Client.client_id == bindparam("client_id"))


def find_client(session: Session, client_id: str) -> Client | None:
    if not CLIENT_ID_PATTERN.match(client_id):
        return None
    return session.scalar(_CLIENT_BY_ID, {"client_id": client_id})


def subject_exists(session: Session, subject: str) -> bool:
    """Whether a user has this subject (the `sub` of the user's tokens)."""
    return session.scalar(select(User.id).where(User.subject == subject).limit(1)) is not None


def find_user(session: Session, username: str) -> User | None:
    if not USERNAME_PATTERN.match(username):
        return None
    return session.scalar(select(User).where(User.username == username))


@dataclass(frozen=True)
class TokenRecord:
    """What introspection and revocation need to know about a stored token."""

    kind: str  # "access_token" or "refresh_token"
    client_pk: int
    client_id: str
    user_pk: int | None
    username: str | None
    subject: str | None
    scope: str
    audience: str
    issued_at: int
    expires_at: int
    revoked: bool
    jti: str | None = None
    family_id: int | None = None
    consumed: bool = False
    # RFC 9449: the thumbprint of the DPoP key an access token is bound to, else None.
    dpop_jkt: str | None = None
    # An access token's login: when its use was last recorded (auth_server/activity.py).
    family_last_active_at: int | None = None

    def is_active(self, now: int) -> bool:
        return not self.revoked and not self.consumed and self.expires_at > now


_FamilyOfAccess = aliased(RefreshFamily)

_ACCESS_TOKEN_BY_HASH = (
    select(
        AccessToken.jti,
        AccessToken.client_pk.label("client_pk"),
        AccessToken.user_id,
        AccessToken.scope,
        AccessToken.audience,
        AccessToken.issued_at,
        AccessToken.expires_at,
        AccessToken.revoked_at,
        AccessToken.family_id,
        AccessToken.dpop_jkt,
        Client.client_id.label("client_name"),
        User.username,
        User.subject,
        _FamilyOfAccess.revoked_at.label("family_revoked_at"),
        _FamilyOfAccess.last_active_at.label("family_last_active_at"),
    )
    .join(Client, Client.id == AccessToken.client_pk)
    .outerjoin(User, User.id == AccessToken.user_id)
    .outerjoin(_FamilyOfAccess, _FamilyOfAccess.id == AccessToken.family_id)
    .where(AccessToken.token_hash == bindparam("token_hash"))
)


def find_access_token(session: Session | Connection, token_hash: str) -> TokenRecord | None:
    # One indexed lookup with its joins: this runs on every protected request.
    row = session.execute(_ACCESS_TOKEN_BY_HASH, {"token_hash": token_hash}).one_or_none()
    if row is None:
        return None
    return TokenRecord(
        kind="access_token",
        client_pk=row.client_pk,
        client_id=row.client_name,
        user_pk=row.user_id,
        username=row.username,
        subject=row.subject or row.client_name,
        scope=row.scope,
        audience=row.audience,
        issued_at=row.issued_at,
        expires_at=row.expires_at,
        revoked=row.revoked_at is not None or row.family_revoked_at is not None,
        jti=row.jti,
        family_id=row.family_id,
        dpop_jkt=row.dpop_jkt,
        family_last_active_at=row.family_last_active_at,
    )


_REFRESH_TOKEN_BY_HASH = (
    select(
        RefreshToken.issued_at,
        RefreshToken.expires_at,
        RefreshToken.consumed_at,
        RefreshFamily.id.label("family_id"),
        RefreshFamily.client_pk.label("client_pk"),
        RefreshFamily.user_id,
        RefreshFamily.scope,
        RefreshFamily.audience,
        RefreshFamily.expires_at.label("family_expires_at"),
        RefreshFamily.revoked_at,
        Client.client_id.label("client_name"),
        User.username,
        User.subject,
    )
    .join(RefreshFamily, RefreshFamily.id == RefreshToken.family_id)
    .join(Client, Client.id == RefreshFamily.client_pk)
    .join(User, User.id == RefreshFamily.user_id)
    .where(RefreshToken.token_hash == bindparam("token_hash"))
)


def find_refresh_token(session: Session | Connection, token_hash: str) -> TokenRecord | None:
    row = session.execute(_REFRESH_TOKEN_BY_HASH, {"token_hash": token_hash}).one_or_none()
    if row is None:
        return None
    return TokenRecord(
        kind="refresh_token",
        client_pk=row.client_pk,
        client_id=row.client_name,
        user_pk=row.user_id,
        username=row.username,
        subject=row.subject,
        scope=row.scope,
        audience=row.audience,
        issued_at=row.issued_at,
        expires_at=min(row.expires_at, row.family_expires_at),
        revoked=row.revoked_at is not None,
        family_id=row.family_id,
        consumed=row.consumed_at is not None,
    )


def find_token(session: Session, token_hash: str, hint: str | None) -> TokenRecord | None:
    """RFC 7009 §2.1 / RFC 7662 §2.1: the hint orders the search, it does not limit it."""
    finders = (find_access_token, find_refresh_token)
    if hint == "refresh_token":
        finders = (find_refresh_token, find_access_token)
    for finder in finders:
        record = finder(session, token_hash)
        if record is not None:
            return record
    return None
