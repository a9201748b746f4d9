"""What operators change after registration, so they never need SQL: enable or delete a client,
update what it may ask for, enable a user again. Each change is audited and commits alone.

A change that takes something away from a client (a scope, an audience) revokes every token
and code it holds, as disabling does: refresh and code exchange re-check the registration, but
an access token already issued would otherwise keep the old reach until it expires.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from auth_server import audit
from auth_server.clients import (
    ClientRegistrationError,
    _check_resource_server,
    validate_redirect_uri,
)
from auth_server.models import (
    AccessToken,
    AuthorizationCode,
    Client,
    RefreshFamily,
    RefreshToken,
    RevokedAccessToken,
    User,
)
from auth_server.revocation import revoke_client_tokens
from auth_server.store import find_client


def _client_or_fail(session: Session, client_id: str) -> Client:
    client = find_client(session, client_id)
    if client is None:
        raise ClientRegistrationError(f"No client {client_id!r}.")
    return client


def enable_client(session: Session, client_id: str, *, actor: str, now: int) -> Client:
    """Let a disabled client get tokens again. What disabling revoked stays revoked."""
    client = _client_or_fail(session, client_id)
    if client.disabled:
        client.disabled = False
        audit.record(session, "client_enabled", actor=actor, at=now, client_id=client_id)
        session.commit()
    return client


def update_client(
    session: Session,
    client_id: str,
    *,
    actor: str,
    now: int,
    scopes: Sequence[str] | None = None,
    audiences: Sequence[str] | None = None,
    redirect_uris: Sequence[str] | None = None,
) -> tuple[Client, tuple[int, int] | None]:
    """Replace the client's scopes, audiences or redirect URIs (None: keep), checked as at
    registration. Returns the client and, if something was taken away, the (logins, stored
    access tokens) that revoked (None: nothing was, nothing revoked)."""
    client = _client_or_fail(session, client_id)
    grant_types = client.grant_types.split()
    new_scopes = list(dict.fromkeys(scopes)) if scopes is not None else client.scopes.split()
    new_audiences = (
        list(dict.fromkeys(audiences)) if audiences is not None else client.audiences.split()
    )
    new_uris = (
        list(dict.fromkeys(redirect_uris))
        if redirect_uris is not None
        else client.redirect_uris.split()
    )
    for uri in new_uris:
        validate_redirect_uri(uri)
    if "authorization_code" in grant_types and not new_uris:
        raise ClientRegistrationError("The authorization_code grant needs redirect URIs.")
    if new_uris and "authorization_code" not in grant_types:
        raise ClientRegistrationError("Redirect URIs are for the authorization_code grant only.")
    if client.can_introspect:
        _check_resource_server(grant_types, new_audiences)
        if new_scopes:
            raise ClientRegistrationError("A client that may introspect asks for no scopes.")
    narrowed = bool(
        set(client.scopes.split()) - set(new_scopes)
        or set(client.audiences.split()) - set(new_audiences)
        or set(client.redirect_uris.split()) - set(new_uris)
    )
    client.scopes = " ".join(new_scopes)
    client.audiences = " ".join(new_audiences)
    client.redirect_uris = " ".join(new_uris)
    revoked: tuple[int, int] | None = None
    if narrowed:
        revoked = revoke_client_tokens(session, client.id, "client_updated", now)
    audit.record(
        session,
        "client_updated",
        actor=actor,
        at=now,
        client_id=client_id,
        scopes=client.scopes,
        audiences=client.audiences,
        redirect_uris=client.redirect_uris,
        families_revoked=revoked[0] if revoked else 0,
        access_tokens_revoked=revoked[1] if revoked else 0,
    )
    session.commit()
    return client, revoked


def delete_client(session: Session, client_id: str, *, actor: str, now: int) -> None:
    """Delete a disabled client with every token, code and login it holds (disabling first
    is what revoked them, in a transaction of its own). The audit log keeps its events."""
    client = _client_or_fail(session, client_id)
    if not client.disabled:
        raise ClientRegistrationError(
            f"Disable the client {client_id!r} first: that revokes what it holds."
        )
    families = select(RefreshFamily.id).where(RefreshFamily.client_pk == client.id)
    session.execute(delete(AccessToken).where(AccessToken.client_pk == client.id))
    session.execute(delete(RevokedAccessToken).where(RevokedAccessToken.client_pk == client.id))
    session.execute(delete(AuthorizationCode).where(AuthorizationCode.client_pk == client.id))
    session.execute(delete(RefreshToken).where(RefreshToken.family_id.in_(families)))
    session.execute(delete(RefreshFamily).where(RefreshFamily.client_pk == client.id))
    session.delete(client)
    audit.record(session, "client_deleted", actor=actor, at=now, client_id=client_id)
    session.commit()


def enable_user(session: Session, user: User, *, actor: str, now: int) -> bool:
    """Let a disabled user log in again; True if it was disabled. Tokens revoked by the
    disabling stay revoked."""
    if not user.disabled:
        return False
    user.disabled = False
    audit.record(session, "user_enabled", actor=actor, at=now, user_id=user.id)
    session.commit()
    return True
