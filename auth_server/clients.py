"""The client registry: registering clients with a server-generated secret shown once."""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence

from sqlalchemy.orm import Session

from auth_server import audit
from auth_server.models import CLIENT_ID_PATTERN, Client
from auth_server.store import find_client
from shared.digests import sha256_hex

SUPPORTED_GRANT_TYPES = ("password", "client_credentials", "refresh_token")


class ClientRegistrationError(ValueError):
    pass


def register_client(
    session: Session,
    client_id: str,
    *,
    grant_types: Sequence[str],
    scopes: Sequence[str],
    audiences: Sequence[str],
    can_introspect: bool = False,
    name: str = "",
    secret: str | None = None,
    now: int | None = None,
) -> tuple[Client, str]:
    """Store a new client; returns it and its secret, which is never stored nor shown again.

    `secret` is for demo data and tests only: real clients get 256 random bits.
    """
    if not CLIENT_ID_PATTERN.match(client_id):
        raise ClientRegistrationError("A client_id is 1-100 letters, digits or . _ ~ -")
    unknown = set(grant_types) - set(SUPPORTED_GRANT_TYPES)
    if unknown:
        raise ClientRegistrationError(f"Unsupported grant types: {', '.join(sorted(unknown))}")
    if find_client(session, client_id) is not None:
        raise ClientRegistrationError(f"The client {client_id!r} already exists.")
    secret = secret or secrets.token_urlsafe(32)
    now = int(time.time()) if now is None else now
    client = Client(
        client_id=client_id,
        name=name,
        secret_hash=sha256_hex(secret),
        grant_types=" ".join(dict.fromkeys(grant_types)),
        scopes=" ".join(dict.fromkeys(scopes)),
        audiences=" ".join(dict.fromkeys(audiences)),
        can_introspect=can_introspect,
        disabled=False,
        created_at=now,
    )
    session.add(client)
    audit.record(session, "client_created", actor="operator", at=now, client_id=client_id)
    session.commit()
    return client, secret
