"""The client registry: registering clients with a server-generated secret shown once."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from auth_server import audit
from auth_server.models import CLIENT_ID_PATTERN, Client
from auth_server.store import find_client
from shared.digests import matches_digest, sha256_hex

SUPPORTED_GRANT_TYPES = ("password", "client_credentials", "refresh_token")


class ClientRegistrationError(ValueError):
    pass


@dataclass(frozen=True)
class ClientRecord:
    """A client as the protocol code sees it: an immutable snapshot of its registration that
    can be cached across requests (an ORM row cannot outlive its session)."""

    id: int
    client_id: str
    secret_hash: str
    grant_type_list: tuple[str, ...]
    scope_list: tuple[str, ...]
    audience_list: tuple[str, ...]
    can_introspect: bool

    @classmethod
    def from_model(cls, client: Client) -> ClientRecord:
        return cls(
            id=client.id,
            client_id=client.client_id,
            secret_hash=client.secret_hash,
            grant_type_list=tuple(client.grant_type_list),
            scope_list=tuple(client.scope_list),
            audience_list=tuple(client.audience_list),
            can_introspect=client.can_introspect,
        )

    # -- what Authlib's client authentication and grants ask of a client (ClientMixin) --

    def check_client_secret(self, client_secret: str) -> bool:
        return matches_digest(client_secret, self.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        # Every client is confidential: it holds a secret (RFC 6749 §2.1).
        return method in ("client_secret_basic", "client_secret_post")

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_type_list


class ClientDirectory:
    """Finds enabled clients, remembering each for `ttl` seconds per process.

    Every introspection authenticates its resource server; without this, that is one more
    query on the hottest path. A disabled client or changed scopes take effect within `ttl`.
    Only clients that exist are remembered, so random client_ids cannot fill the memory.
    """

    MAX_ENTRIES = 1024

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic):
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[str, tuple[float, ClientRecord]] = {}

    def find(self, session: Session, client_id: str) -> ClientRecord | None:
        now = self._clock()
        entry = self._entries.get(client_id)
        if entry is not None and entry[0] > now:
            return entry[1]
        client = find_client(session, client_id)
        if client is None or client.disabled:
            self._entries.pop(client_id, None)
            return None
        record = ClientRecord.from_model(client)
        if self._ttl > 0:
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries.clear()
            self._entries[client_id] = (now + self._ttl, record)
        return record


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
