"""Consent to third-party apps: what each scope means to a person, whether the user already
allowed an app these scopes, remembering an Allow, and withdrawing it (with the app's tokens).

First-party apps never ask: signing in to them is the decision. A third-party app asks once
per user and set of scopes; a request for a scope outside the ones allowed asks again, and
`prompt=consent` always asks (OpenID Connect Core §3.1.2.1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from auth_server import audit
from auth_server.models import Client, Consent, User
from auth_server.revocation import revoke_user_client_tokens

SCOPE_DESCRIPTIONS = {
    "profile": "See your username",
    "notes:read": "Read your notes",
    "notes:write": "Create, change and delete your notes",
    "reports:read": "Read your reports",
}
CONSENT_WITHDRAWN = "consent_withdrawn"


def describe_scope(scope: str) -> str:
    return SCOPE_DESCRIPTIONS.get(scope, f"Use the permission “{scope}”")


@dataclass(frozen=True)
class AppAccess:
    client_id: str
    app_name: str
    scopes: tuple[str, ...]
    granted_at: int


def _find(session: Session, user_id: int, client_pk: int) -> Consent | None:
    return session.scalar(
        select(Consent).where(Consent.user_id == user_id, Consent.client_pk == client_pk)
    )


def covers(session: Session, user_id: int, client_pk: int, scopes: Sequence[str]) -> bool:
    """Whether the user has allowed this app every scope in `scopes`."""
    consent = _find(session, user_id, client_pk)
    return consent is not None and set(scopes) <= set(consent.scope_list)


def grant(
    session: Session, user: User, client, scopes: Sequence[str], now: int, ip: str | None
) -> None:
    """Remember the Allow (adding `scopes` to what was allowed before). The caller commits, in
    the transaction that issues the code."""
    consent = _find(session, user.id, client.id)
    if consent is None:
        try:
            with session.begin_nested():
                consent = Consent(user_id=user.id, client_pk=client.id, scope="", granted_at=now)
                session.add(consent)
        except IntegrityError:
            # The same user allowed the same app in another tab a moment ago: add to that row.
            consent = _find(session, user.id, client.id)
            assert consent is not None  # the row whose insert collided with ours
    consent.scope = " ".join(dict.fromkeys([*consent.scope_list, *scopes]))
    consent.granted_at = now
    audit.record(
        session,
        "consent_granted",
        actor=f"user:{user.subject}",
        at=now,
        user_id=user.id,
        client_id=client.client_id,
        ip=ip,
        scope=" ".join(scopes),
    )


def app_accesses(session: Session, user_id: int) -> list[AppAccess]:
    rows = session.scalars(
        select(Consent).where(Consent.user_id == user_id).order_by(Consent.granted_at.desc())
    ).all()
    return [
        AppAccess(
            client_id=c.client.client_id,
            app_name=c.client.name or c.client.client_id,
            scopes=tuple(c.scope_list),
            granted_at=c.granted_at,
        )
        for c in rows
    ]


def withdraw(session: Session, user: User, client_id: str, now: int, ip: str | None) -> bool:
    """Forget the user's Allow for the app and revoke every token and code the app holds for
    the user. False if there was none. Commits."""
    consent = session.scalar(
        select(Consent)
        .join(Client, Client.id == Consent.client_pk)
        .where(Consent.user_id == user.id, Client.client_id == client_id)
    )
    if consent is None:
        return False
    client_pk = consent.client_pk
    families, access = revoke_user_client_tokens(
        session, user.id, client_pk, CONSENT_WITHDRAWN, now
    )
    session.delete(consent)
    audit.record(
        session,
        "consent_withdrawn",
        actor=f"user:{user.subject}",
        at=now,
        user_id=user.id,
        client_id=client_id,
        ip=ip,
        families_revoked=families,
        access_tokens_revoked=access,
    )
    session.commit()
    return True
