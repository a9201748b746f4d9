"""RFC 7662 introspection without the framework around it: the hot path of every protected
request at every resource server.

One answer costs a client check against the worker's cached registration (ClientDirectory, a
SHA-256 compare) and one indexed statement on a pooled connection in autocommit: no ORM
session, no transaction, no Authlib request object. What it answers is the same as Authlib's
endpoint answered (tests/auth_server/test_introspection.py): the same errors in the same order,
the same members, the same `{"active": false}` cases.

No pre-ping guards the pool (shared/service/database.py): a pooled connection the database dropped
fails the request's first statement, SQLAlchemy then discards every connection of that pool, and
the view runs the whole answer, a read with nothing to undo, once more on a fresh connection
(`retried_once_if_dropped`). So a database restart costs no answer; a database that is really
down still answers 503 within the connect timeout.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from auth_server.clients import ClientRecord
from auth_server.introspection_memory import IntrospectionMemory
from auth_server.protocol.errors import InvalidClientError, InvalidRequestError
from auth_server.self_contained import SelfContainedTokens, unverified_self_contained_claims
from auth_server.store import TokenRecord, find_access_token
from shared.protocol.basic_auth import parse_basic_credentials
from shared.protocol.digests import sha256_hex

T = TypeVar("T")


class FindClient(Protocol):
    """A client's registration by client_id (`fresh`: bypassing the worker's cache)."""

    def __call__(self, client_id: str, *, fresh: bool = False) -> ClientRecord | None: ...


INACTIVE = {"active": False}
# Longer than anything this server issues: never hashed nor looked up (still exactly inactive).
MAX_TOKEN_LENGTH = 8192


def authenticate_introspector(
    authorization: str | None,
    form: Mapping[str, str],
    find_client: FindClient,
) -> ClientRecord:
    """The resource server calling, by client_secret_basic or client_secret_post (RFC 7662 §2.1
    requires authentication; RFC 6749 §2.3.1), allowed to introspect (§2.3: else 401)."""
    if authorization and "client_secret" in form:
        # RFC 6749 §2.3: a client MUST NOT use more than one authentication method.
        raise InvalidRequestError("Use one client authentication method, not two.")
    client = _client_with_secret(find_client, *parse_basic_credentials(authorization))
    if client is None and not authorization:
        client = _client_with_secret(find_client, form.get("client_id"), form.get("client_secret"))
    if client is None:
        # One answer for unknown client, wrong secret and missing credentials, so it does not
        # tell which client_ids exist. 401 + WWW-Authenticate: Basic (RFC 6749 §5.2).
        raise InvalidClientError(description="Client authentication failed.", status_code=401)
    if not client.can_introspect:
        raise InvalidClientError(
            description="This client is not allowed to introspect tokens.", status_code=401
        )
    return client


def _client_with_secret(
    find_client: FindClient,
    client_id: str | None,
    secret: str | None,
) -> ClientRecord | None:
    if not client_id or secret is None:
        return None
    client = find_client(client_id)
    if client is not None and not _accepts(client, secret):
        # A registration cached from before `clients rotate-secret` would refuse the new
        # secret for up to CLIENT_CACHE_SECONDS: read it again before refusing.
        client = find_client(client_id, fresh=True)
    if client is None or not _accepts(client, secret):
        return None
    return client


def _accepts(client: ClientRecord, secret: str) -> bool:
    # A public client has no secret and may use neither method (check_endpoint_auth_method).
    return client.check_endpoint_auth_method(
        "client_secret_basic", "introspection"
    ) and client.check_client_secret(secret)


def look_up_access_token(
    engine: Engine,
    token: str,
    memory: IntrospectionMemory | None = None,
    self_contained: SelfContainedTokens | None = None,
) -> TokenRecord | None:
    """The access token `token` is, or None: what `memory` remembers of it, else one statement
    on a pooled connection (remembered for next time): its stored row, or for a self-contained
    token (auth_server/self_contained.py), once its signature verifies, the state that can end
    it early."""
    if len(token) > MAX_TOKEN_LENGTH:
        return None
    token_hash = sha256_hex(token)
    if memory is None:
        return _read_access_token(engine, token, token_hash, self_contained)
    # The generation is read before the database, so a revocation committed after it makes
    # the memory forget this read too (introspection_memory.py).
    generation = memory.generation()
    record = memory.recall(token_hash, generation)
    if record is None:
        record = _read_access_token(engine, token, token_hash, self_contained)
        if record is not None:
            memory.remember(token_hash, record, generation)
    return record


def _read_access_token(
    engine: Engine, token: str, token_hash: str, self_contained: SelfContainedTokens | None
) -> TokenRecord | None:
    with engine.connect() as connection:
        if self_contained is not None and unverified_self_contained_claims(token) is not None:
            return self_contained.find(connection, token)
        return find_access_token(connection, token_hash)


def retried_once_if_dropped(read: Callable[[], T], reset: Callable[[], None]) -> T:
    """`read()`, and if the database had dropped the connection it used (SQLAlchemy has then
    invalidated the pool's older connections too), `reset()` and `read()` once more. Only for
    work that writes nothing: it may run twice."""
    try:
        return read()
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    reset()
    return read()


def introspection_payload(
    record: TokenRecord | None, served: Sequence[str], now: int, issuer: str
) -> dict:
    """RFC 7662 §2.2: unknown, expired, revoked: exactly {"active": false}, nothing more. §4: a
    resource server learns only about the access tokens meant for it (an `aud` it serves); any
    other is inactive to it."""
    if record is None or not record.is_active(now):
        return dict(INACTIVE)
    audience = record.audience.split()
    if not set(audience) & set(served):
        return dict(INACTIVE)
    payload = {
        "active": True,
        "scope": record.scope,
        "client_id": record.client_id,
        "sub": record.subject,
        "aud": audience[0] if len(audience) == 1 else audience,
        "iss": issuer,
        "exp": record.expires_at,
        "iat": record.issued_at,
        "token_use": record.kind,
        "jti": record.jti,
        "token_type": "Bearer",
    }
    if record.username is not None:
        payload["username"] = record.username
    if record.family_id is not None:
        # Non-standard: the login (refresh family) the token belongs to, so a resource
        # server's cache can drop it on a session-revoked event (docs/revocation-events.md).
        payload["sid"] = str(record.family_id)
    if record.dpop_jkt is not None:
        # RFC 9449 §6.2: the key the token is bound to, and its type.
        payload["cnf"] = {"jkt": record.dpop_jkt}
        payload["token_type"] = "DPoP"
    return payload
