"""RFC 6749 §4.4 client_credentials without the framework around it: the grant machine clients
call for every token they need, so its cost is the token endpoint's throughput.

One answer costs a client check against the worker's cached registration (ClientDirectory, a
SHA-256 compare), one ES256 signature, and on PostgreSQL ONE statement in autocommit: the epoch
guard, the access token row and its audit row together. No ORM session, no BEGIN/COMMIT round
trips, no Authlib request or grant object. What it answers is what Authlib's grant
(grants.ClientCredentialsGrant, still registered) answers, byte for byte, for every request
shape: the same errors in the same order, the same body and headers
(tests/auth_server/test_client_credentials_lean.py runs both). The rows it writes are the ones
TokenService.issue_client_token writes, and its audit event is logged and counted the same way
once committed (AuditTrail.publish).

Revocation stays final (auth_server/epochs.py): on PostgreSQL the statement reads the client's
epoch `FOR SHARE` and inserts only if it is the one read with the credentials, so a `clients
disable` either committed its increment before (nothing is inserted: refused) or waits for this
statement to commit and then revokes the token with the others. The lock, the check and the
writes are one statement, so nothing can run between them: the steps "guarded" and "written"
are reported together once it has run. On SQLite the guard is the conditional UPDATE that takes
the write lock, then the inserts, then the commit, each step where it happens.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import bindparam, insert, text, update
from sqlalchemy.engine import Connection, Engine

from auth_server.audit import AuditTrail, event_row
from auth_server.audit_buffer import AuditBuffer
from auth_server.clients import ClientRecord
from auth_server.epochs import Steps
from auth_server.group_commit import GroupCommit
from auth_server.keys import KeyRing
from auth_server.models import AccessToken, AuditEvent, Client
from auth_server.protocol.errors import (
    InvalidClientError,
    InvalidRequestError,
    UnauthorizedClientError,
)
from auth_server.protocol.policy import resolve_audience, resolve_scope
from auth_server.self_contained import ClientEpochs, self_contained_jti
from auth_server.tokens import TokenPolicy, access_token_jwt, token_response
from shared.protocol.basic_auth import parse_basic_credentials
from shared.protocol.digests import sha256_hex
from shared.service.database import affected_rows, cooperative_waits

GRANT_TYPE = "client_credentials"


class FindClient(Protocol):
    """A client's registration by client_id (`fresh`: bypassing the worker's cache)."""

    def __call__(self, client_id: str, *, fresh: bool = False) -> ClientRecord | None: ...


class Form(Protocol):
    """The request's form parameters (a Werkzeug MultiDict)."""

    def __contains__(self, key: object) -> bool: ...

    def get(self, key: str) -> str | None: ...

    def getlist(self, key: str) -> list[str]: ...


# -- client authentication (what TesseraAuthorizationServer.authenticate_client does) ------


def client_with_secret(
    find_client: FindClient, client_id: str | None, client_secret: str | None
) -> ClientRecord | None:
    """The client `client_id` if `client_secret` is one of its secrets, else None."""
    if not client_id or client_secret is None:
        return None
    client = find_client(client_id)
    if client is None:
        return None
    if client.check_client_secret(client_secret):
        return client
    # A registration cached from before `clients rotate-secret` would refuse the new secret for
    # up to CLIENT_CACHE_SECONDS: read it again before refusing.
    client = find_client(client_id, fresh=True)
    if client is not None and client.check_client_secret(client_secret):
        return client
    return None


def authenticate_confidential_client(
    authorization: str | None, form: Mapping[str, str] | Form, find_client: FindClient
) -> ClientRecord:
    """client_secret_basic, then client_secret_post (RFC 6749 §2.3.1), as the Authlib server
    tries them for the grants of confidential clients (grants.CLIENT_AUTH_METHODS)."""
    if authorization and "client_secret" in form:
        # RFC 6749 §2.3: a client MUST NOT use more than one authentication method.
        raise InvalidRequestError("Use one client authentication method, not two.")
    client = client_with_secret(find_client, *parse_basic_credentials(authorization))
    if client is not None and client.check_endpoint_auth_method("client_secret_basic", "token"):
        return client
    if not authorization:
        client = client_with_secret(find_client, form.get("client_id"), form.get("client_secret"))
        if client is not None and client.check_endpoint_auth_method("client_secret_post", "token"):
            return client
    # One answer for unknown client, wrong secret and missing credentials, so it does not
    # tell which client_ids exist. 401 + WWW-Authenticate: Basic (RFC 6749 §5.2).
    raise InvalidClientError(description="Client authentication failed.", status_code=401)


# -- the statements, built once ----------------------------------------------------------------

# PostgreSQL: the guard of epochs.py (`SELECT ... FOR SHARE`, with synchronous_commit off for
# this transaction alone: tokens.py issue_client_token says why that is safe for an access
# token), and the two inserts of each token whose client's epoch is the one read with its
# credentials. The tokens of one batch (auth_server/group_commit.py) come as one JSON array of
# rows, one parameter (15 array parameters cost SQLAlchemy and psycopg more to bind than one
# json.dumps); a batch of one is the common case when the worker is not busy.
_BATCH_COLUMNS = (
    "jti",
    "token_hash",
    "client_pk",
    "scope",
    "audience",
    "issued_at",
    "expires_at",
    "dpop_jkt",
    "token_epoch",
    "at",
    "event",
    "actor",
    "audit_client_id",
    "ip",
    "detail",
)
_ISSUE_POSTGRESQL = text(
    """
    WITH batch AS (
        SELECT * FROM json_to_recordset(CAST(:rows AS json))
            AS b(jti text, token_hash text, client_pk integer, scope text, audience text,
                issued_at bigint, expires_at bigint, dpop_jkt text, token_epoch integer,
                at bigint, event text, actor text, audit_client_id text, ip text, detail text,
                position integer)
    ), guard AS (
        SELECT id, token_epoch, set_config('synchronous_commit', 'off', true) AS asynchronous
        FROM clients WHERE id IN (SELECT client_pk FROM batch) FOR SHARE OF clients
    ), issued AS (
        INSERT INTO access_tokens
            (jti, token_hash, client_id, scope, audience, issued_at, expires_at, dpop_jkt)
        SELECT b.jti, b.token_hash, b.client_pk, b.scope, b.audience, b.issued_at,
            b.expires_at, b.dpop_jkt
        FROM batch b JOIN guard g ON g.id = b.client_pk AND g.token_epoch = b.token_epoch
        ORDER BY b.position
        RETURNING jti
    ), audited AS (
        INSERT INTO audit_events (at, event, actor, user_id, client_id, ip, detail)
        SELECT b.at, b.event, b.actor, NULL, b.audit_client_id, b.ip, b.detail
        FROM batch b JOIN issued i ON i.jti = b.jti
        ORDER BY b.position
        RETURNING id
    )
    SELECT jti FROM issued
    """
)


# The worker's group commit of client_credentials tokens: a row of `_BATCH_COLUMNS` in,
# whether it was written out.
TokenBatches = GroupCommit[Mapping[str, Any], bool]


def token_batches_for(
    engine: Engine, on_written: Callable[[int], None] | None = None
) -> TokenBatches | None:
    """The group commit of tokens for `engine` (AuthComponents.reader), if it is PostgreSQL;
    `on_written` is told each batch's size."""
    if engine.dialect.name != "postgresql":
        return None
    return GroupCommit(lambda rows: write_token_batch(engine, rows), on_written=on_written)


def write_token_batch(engine: Engine, rows: Sequence[Mapping[str, Any]]) -> list[bool]:
    """Write a batch of client_credentials tokens in one autocommit statement on PostgreSQL;
    for each row (`_BATCH_COLUMNS`), whether its token was written (False: its client's
    epoch moved, or the client is gone: the token must be refused)."""
    batch = json.dumps(
        [
            {**{name: row[name] for name in _BATCH_COLUMNS}, "position": n}
            for n, row in enumerate(rows)
        ]
    )
    # The worker's other requests run (and queue the next batch) while this one is in flight.
    with (
        engine.connect() as connection,
        cooperative_waits(connection.connection.driver_connection),
    ):
        written = set(connection.scalars(_ISSUE_POSTGRESQL, {"rows": batch}))
    return [row["jti"] in written for row in rows]


_clients = Client.__table__
# SQLite: the conditional UPDATE of epochs.py, which takes the database's write lock.
_GUARD_SQLITE = (
    update(_clients)
    .where(_clients.c.id == bindparam("client_pk"), _clients.c.token_epoch == bindparam("epoch"))
    .values(token_epoch=_clients.c.token_epoch)
)
_INSERT_TOKEN = insert(AccessToken.__table__)
_INSERT_AUDIT = insert(AuditEvent.__table__)


@dataclass(frozen=True)
class SelfContainedIssuance:
    """What issuing self-contained tokens needs (AuthComponents.self_contained_issuance)."""

    epochs: ClientEpochs
    audit_rows: AuditBuffer


class ClientCredentials:
    """One client_credentials token request, from the authenticated client to the response.

    `engine` is the app's engine for single statements (AuthComponents.reader: autocommit on
    PostgreSQL); `steps` what the issuance reports its steps to (epochs.Steps); `token_batches`
    the worker's group commit of tokens on PostgreSQL (`token_batches_for`), None on SQLite,
    whose single writer takes the write lock per token anyway."""

    def __init__(
        self,
        engine: Engine,
        policy: TokenPolicy,
        keyring: KeyRing,
        audit_trail: AuditTrail,
        clock: Callable[[], float],
        steps: Steps,
        forget_client: Callable[[str], None],
        token_batches: TokenBatches | None = None,
        self_contained: SelfContainedIssuance | None = None,
    ):
        self.engine = engine
        self.token_batches = token_batches
        self.self_contained = self_contained
        self.policy = policy
        self.keyring = keyring
        self.audit_trail = audit_trail
        self.clock = clock
        self.steps = steps
        self.forget_client = forget_client

    def token_response(
        self,
        client: ClientRecord,
        form: Form,
        ip: str | None,
        dpop_jkt: str | None,
    ) -> dict:
        """The RFC 6749 §5.1 body for `client` (authenticated), or an OAuth2Error."""
        if not client.check_grant_type(GRANT_TYPE):
            raise UnauthorizedClientError(f"The client is not allowed the grant type {GRANT_TYPE}.")
        scope = resolve_scope(form.get("scope"), client.scope_list)
        audience = resolve_audience(form.getlist("resource"), client.audience_list)
        return self.issue(client, scope, audience, ip, dpop_jkt)

    def issue(
        self,
        client: ClientRecord,
        scope: Sequence[str],
        audience: Sequence[str],
        ip: str | None,
        dpop_jkt: str | None,
    ) -> dict:
        """TokenService.issue_client_token without a session: the same rows, event, answer;
        or, with `self_contained`, the same event and answer and no token row."""
        if self.self_contained is not None:
            return self._issue_self_contained(client, scope, audience, ip, dpop_jkt)
        signer = self.keyring.signing_key()
        now = int(self.clock())
        access, jti, expires_at = access_token_jwt(
            signer, self.policy, client.client_id, client.client_id, scope, audience, now, dpop_jkt
        )
        token_row = {
            "jti": jti,
            "token_hash": sha256_hex(access),
            # the column's name (AccessToken.client_pk): the client's primary key
            "client_id": client.id,
            "scope": " ".join(scope),
            "audience": " ".join(audience),
            "issued_at": now,
            "expires_at": expires_at,
            "dpop_jkt": dpop_jkt,
        }
        audit_row, fields = _client_event("token_issued", client, now, ip, jti=jti)
        if self.token_batches is not None:
            issued = self._write_postgresql(client, token_row, audit_row)
        else:
            with self.engine.connect() as connection:
                issued = self._write_sqlite(connection, client, token_row, audit_row)
        if not issued:
            raise self._refused(client, now, ip)
        self.audit_trail.publish("token_issued", fields)
        return token_response(self.policy, access, scope, dpop_jkt=dpop_jkt)

    def _issue_self_contained(
        self,
        client: ClientRecord,
        scope: Sequence[str],
        audience: Sequence[str],
        ip: str | None,
        dpop_jkt: str | None,
    ) -> dict:
        """A token that is not stored (auth_server/self_contained.py): its client's epoch is
        signed into its jti, so a revocation that commits at any point after this check makes
        it inactive; one that committed before it is refused here, as the stored path's guard
        refuses it."""
        assert self.self_contained is not None
        signer = self.keyring.signing_key()
        now = int(self.clock())
        if self.self_contained.epochs.current(client.client_id) != client.token_epoch:
            raise self._refused(client, now, ip)
        self.steps("guarded")
        access, jti, _ = access_token_jwt(
            signer,
            self.policy,
            client.client_id,
            client.client_id,
            scope,
            audience,
            now,
            dpop_jkt,
            jti=self_contained_jti(client.token_epoch),
        )
        audit_row, fields = _client_event("token_issued", client, now, ip, jti=jti)
        self.self_contained.audit_rows.add(audit_row)
        self.steps("written")
        self.audit_trail.publish("token_issued", fields)
        return token_response(self.policy, access, scope, dpop_jkt=dpop_jkt)

    def _write_postgresql(
        self, client: ClientRecord, token_row: dict[str, Any], audit_row: dict[str, Any]
    ) -> bool:
        assert self.token_batches is not None
        written = self.token_batches.submit(
            {
                **token_row,
                "client_pk": token_row["client_id"],
                "token_epoch": client.token_epoch,
                **{k: v for k, v in audit_row.items() if k != "client_id"},
                "audit_client_id": audit_row["client_id"],
            }
        )
        if not written:
            return False
        # Committed already (autocommit): the guard, the check and the rows were one statement.
        self.steps("guarded")
        self.steps("written")
        return True

    def _write_sqlite(
        self,
        connection: Connection,
        client: ClientRecord,
        token_row: dict[str, Any],
        audit_row: dict[str, Any],
    ) -> bool:
        with connection.begin() as transaction:
            guarded = connection.execute(
                _GUARD_SQLITE, {"client_pk": client.id, "epoch": client.token_epoch}
            )
            if affected_rows(guarded) != 1:
                transaction.rollback()
                return False
            self.steps("guarded")
            connection.execute(_INSERT_TOKEN, token_row)
            connection.execute(_INSERT_AUDIT, audit_row)
            self.steps("written")
        return True

    def _refused(self, client: ClientRecord, now: int, ip: str | None) -> InvalidClientError:
        """The client's epoch moved since its registration was read: record what
        TokenService._refuse records (the refusal, on its own), forget the registration, and
        return the error to raise."""
        row, fields = _client_event(
            "issuance_refused_revoked", client, now, ip, reason="client_revoked"
        )
        with self.engine.begin() as connection:
            connection.execute(_INSERT_AUDIT, row)
        self.audit_trail.publish("issuance_refused_revoked", fields)
        self.forget_client(client.client_id)
        return InvalidClientError(description="Client authentication failed.", status_code=401)


def _client_event(
    event: str, client: ClientRecord, now: int, ip: str | None, **detail: Any
) -> tuple[dict, dict]:
    """The audit row and published fields of this grant's event about `client`."""
    return event_row(
        event,
        actor=f"client:{client.client_id}",
        at=now,
        client_id=client.client_id,
        ip=ip,
        grant_type=GRANT_TYPE,
        **detail,
    )
