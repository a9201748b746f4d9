"""Authorization server tables.

Times are integer epoch seconds (what JWT `iat`/`exp` and RFC 7662 use), so comparisons are
the same on SQLite and PostgreSQL. Secrets never appear in a column: passwords as Argon2id,
client secrets and tokens as SHA-256 hex digests, private keys encrypted when a key is set.
"""

from __future__ import annotations

import json
import re

from sqlalchemy import (
    DDL,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from auth_server.db import db

SHA256_HEX = 64
# RFC 7638 SHA-256 JWK thumbprint, base64url: what binds a token to a DPoP key (RFC 9449).
JKT_LENGTH = 43
# A User-Agent header is kept to this many characters (it is only shown to the user).
USER_AGENT_LENGTH = 300
# What identifiers may look like; anything else is never looked up (a NUL byte or a lone
# surrogate would be a database error, not a miss).
CLIENT_ID_PATTERN = re.compile(r"^[A-Za-z0-9._~-]{1,100}$")
USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9._@+-]{1,150}$")


def split_words(value: str | None) -> list[str]:
    return value.split() if value else []


class User(db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Stable public identifier (JWT `sub`): usernames may change, subjects never do.
    subject: Mapped[str] = mapped_column(String(36), unique=True)
    username: Mapped[str] = mapped_column(String(150), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    # Space-separated scopes this user may delegate; NULL means no per-user restriction.
    allowed_scopes: Mapped[str | None] = mapped_column(Text, default=None)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[int] = mapped_column(BigInteger)
    password_changed_at: Mapped[int] = mapped_column(BigInteger)
    # Revocation epoch: every operation that revokes all of the user's tokens (password change,
    # disable, revoke-tokens) increments it first, and every issuance re-checks the value it
    # read with the credentials before committing (auth_server/epochs.py).
    token_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    @property
    def scope_limit(self) -> list[str] | None:
        """The scopes this user may delegate, or None for no limit of the user's own (the
        user-side argument of auth_server.protocol.policy's narrowing)."""
        return None if self.allowed_scopes is None else split_words(self.allowed_scopes)


class Client(db.Model):
    __tablename__ = "clients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    # RFC 6749 §2.1 client type. "confidential": authenticates with its secret
    # (client_secret_basic or client_secret_post); "public": has no secret (secret_hash is
    # empty, which no secret matches) and authenticates with its client_id alone (`none`),
    # which PKCE makes safe for the authorization code grant.
    client_type: Mapped[str] = mapped_column(
        String(12), default="confidential", server_default="confidential"
    )
    secret_hash: Mapped[str] = mapped_column(String(SHA256_HEX))
    # The secret replaced by the last `clients rotate-secret`, accepted until
    # previous_secret_expires_at so the client's deployments can switch without an outage.
    previous_secret_hash: Mapped[str | None] = mapped_column(String(SHA256_HEX), default=None)
    previous_secret_expires_at: Mapped[int | None] = mapped_column(BigInteger, default=None)
    grant_types: Mapped[str] = mapped_column(Text, default="")
    scopes: Mapped[str] = mapped_column(Text, default="")
    audiences: Mapped[str] = mapped_column(Text, default="")
    # Space-separated redirect URIs for the authorization code grant, compared by exact string
    # match (RFC 9700 §4.1.3): no wildcards, no prefixes.
    redirect_uris: Mapped[str] = mapped_column(Text, default="", server_default="")
    # Resource servers get this flag: only they may call the introspection endpoint.
    can_introspect: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[int] = mapped_column(BigInteger)
    # Revocation epoch of the client (`clients disable` increments it), as on users.
    token_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # A third-party app asks each user's consent (a screen naming it and the scopes) before
    # its first code; a first-party app's sign-in is the decision.
    third_party: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    @property
    def grant_type_list(self) -> list[str]:
        return split_words(self.grant_types)

    @property
    def scope_list(self) -> list[str]:
        return split_words(self.scopes)

    @property
    def audience_list(self) -> list[str]:
        return split_words(self.audiences)

    @property
    def redirect_uri_list(self) -> list[str]:
        return split_words(self.redirect_uris)


class RefreshFamily(db.Model):
    """One login: every refresh token rotated from it, and the access tokens they produced."""

    __tablename__ = "refresh_families"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    # client_id is the OAuth identifier everywhere in the code; this integer key to clients.id
    # keeps its column name (so no migration) under another attribute name, here and below.
    client_pk: Mapped[int] = mapped_column("client_id", ForeignKey("clients.id"), index=True)
    scope: Mapped[str] = mapped_column(Text)
    audience: Mapped[str] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger)
    # Absolute lifetime: no refresh extends it.
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)
    # Last refresh.
    last_used_at: Mapped[int] = mapped_column(BigInteger)
    # Last validated use of one of its access tokens (introspection answering active), written
    # at most once per REFRESH_ACTIVITY_INTERVAL (auth_server/activity.py). The idle timeout
    # counts from the later of the two.
    last_active_at: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, default=None)
    revoked_reason: Mapped[str | None] = mapped_column(String(50), default=None)
    # RFC 9449 §5: a public client's login is bound to the DPoP key it logged in with; every
    # refresh must prove that key. NULL: not bound (confidential clients, or no proof).
    dpop_jkt: Mapped[str | None] = mapped_column(String(JKT_LENGTH), default=None)
    # Where the login came from, shown on the account page next to the session.
    ip: Mapped[str | None] = mapped_column(String(64), default=None)
    user_agent: Mapped[str | None] = mapped_column(String(USER_AGENT_LENGTH), default=None)

    user: Mapped[User] = relationship(lazy="joined")
    client: Mapped[Client] = relationship(lazy="joined")


class RefreshToken(db.Model):
    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(SHA256_HEX), unique=True)
    family_id: Mapped[int] = mapped_column(ForeignKey("refresh_families.id"), index=True)
    issued_at: Mapped[int] = mapped_column(BigInteger)
    # Idle expiry: issued_at + idle TTL, capped by the family's absolute expiry.
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)
    consumed_at: Mapped[int | None] = mapped_column(BigInteger, default=None)
    # The successor's token response, encrypted under a key derived from *this* token's value,
    # kept only while a reuse grace window is configured: a racing duplicate refresh can get the
    # same successor back although the database holds no usable token.
    grace_response: Mapped[str | None] = mapped_column(Text, default=None)

    family: Mapped[RefreshFamily] = relationship(lazy="joined")


class AccessToken(db.Model):
    __tablename__ = "access_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(SHA256_HEX), unique=True)
    client_pk: Mapped[int] = mapped_column("client_id", ForeignKey("clients.id"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True, default=None)
    family_id: Mapped[int | None] = mapped_column(
        ForeignKey("refresh_families.id"), index=True, default=None
    )
    scope: Mapped[str] = mapped_column(Text)
    audience: Mapped[str] = mapped_column(Text)
    issued_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, default=None)
    # Which revocation killed it (password_changed, user_disabled, client_disabled, ...); a
    # token dead through its family has the reason on the family.
    revoked_reason: Mapped[str | None] = mapped_column(String(50), default=None)
    # RFC 9449: the thumbprint of the DPoP key the token is bound to (`cnf.jkt`); NULL: bearer.
    dpop_jkt: Mapped[str | None] = mapped_column(String(JKT_LENGTH), default=None)


class RevokedAccessToken(db.Model):
    """A self-contained access token revoked before its expiry (auth_server/self_contained.py).

    Those tokens have no row of their own: their signature, claims and client are their state,
    so a revocation of one of them (RFC 7009, by its client) is this row, kept until the
    token expires (auth_server/maintenance.py purges it after)."""

    __tablename__ = "revoked_access_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_pk: Mapped[int] = mapped_column("client_id", ForeignKey("clients.id"), index=True)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)
    revoked_at: Mapped[int] = mapped_column(BigInteger)
    revoked_reason: Mapped[str] = mapped_column(String(50))


class AuthorizationCode(db.Model):
    """An authorization code (RFC 6749 §4.1.2) between the login and its exchange.

    Stored as its SHA-256 digest only; bound to the client, the user, the exact redirect_uri,
    and the PKCE S256 challenge (RFC 7636). Used once: the exchange consumes it with a
    conditional UPDATE, and links the login (refresh family) it started, so that a second use
    can revoke every token issued from it (RFC 6749 §4.1.2).
    """

    __tablename__ = "authorization_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(SHA256_HEX), unique=True)
    client_pk: Mapped[int] = mapped_column("client_id", ForeignKey("clients.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    redirect_uri: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(Text)
    # RFC 8707 resources the tokens will be for, space-separated.
    audience: Mapped[str] = mapped_column(Text)
    # BASE64URL(SHA256(code_verifier)): S256 is the only method accepted.
    code_challenge: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)
    consumed_at: Mapped[int | None] = mapped_column(BigInteger, default=None)
    # The user's revocation epoch at the login that issued the code: the exchange refuses it
    # once the epoch has moved (a password change between login and exchange).
    user_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # RFC 9449 §10: `dpop_jkt` of the authorization request; the exchange must prove that key.
    dpop_jkt: Mapped[str | None] = mapped_column(String(JKT_LENGTH), default=None)
    # The login this code started, set in the transaction that consumed it.
    family_id: Mapped[int | None] = mapped_column(
        ForeignKey("refresh_families.id"), index=True, default=None
    )

    # The browser that signed in at the authorization endpoint: the login's family gets them.
    ip: Mapped[str | None] = mapped_column(String(64), default=None)
    user_agent: Mapped[str | None] = mapped_column(String(USER_AGENT_LENGTH), default=None)

    client: Mapped[Client] = relationship(lazy="joined")
    user: Mapped[User] = relationship(lazy="joined")


class Consent(db.Model):
    """A user's Allow for a third-party app: the scopes granted so far. A request for scopes
    outside them asks again; withdrawing it (account page) deletes the row and the app's
    tokens of the user."""

    __tablename__ = "consents"
    __table_args__ = (UniqueConstraint("user_id", "client_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    client_pk: Mapped[int] = mapped_column("client_id", ForeignKey("clients.id"), index=True)
    scope: Mapped[str] = mapped_column(Text)
    granted_at: Mapped[int] = mapped_column(BigInteger)

    client: Mapped[Client] = relationship(lazy="joined")

    @property
    def scope_list(self) -> list[str]:
        return split_words(self.scope)


class SigningKey(db.Model):
    """A JWT signing key: `next` (published, not signing), `active` (signing), `retired`
    (published until every token it signed has expired)."""

    __tablename__ = "signing_keys"
    # The database, not the code, guarantees one active and at most one next key per algorithm,
    # so two workers bootstrapping or rotating at once cannot both win.
    __table_args__ = tuple(
        Index(
            f"uq_signing_keys_{state}_alg",
            "alg",
            unique=True,
            sqlite_where=text(f"state = '{state}'"),
            postgresql_where=text(f"state = '{state}'"),
        )
        for state in ("active", "next")
    )

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(10))
    state: Mapped[str] = mapped_column(String(10), index=True)
    private_key: Mapped[str] = mapped_column(Text)
    private_key_encrypted: Mapped[bool] = mapped_column(Boolean, default=False)
    public_jwk: Mapped[str] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger)
    activated_at: Mapped[int | None] = mapped_column(BigInteger, default=None)
    retired_at: Mapped[int | None] = mapped_column(BigInteger, default=None)
    # When a retired key leaves the JWKS: its retirement plus the longest access-token lifetime.
    remove_after: Mapped[int | None] = mapped_column(BigInteger, default=None)

    @property
    def public_jwk_dict(self) -> dict:
        return json.loads(self.public_jwk)


class AuditEvent(db.Model):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[int] = mapped_column(BigInteger, index=True)
    event: Mapped[str] = mapped_column(String(50), index=True)
    # Who caused it: "user:<subject>", "client:<client_id>", "operator", "system".
    actor: Mapped[str] = mapped_column(String(200))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True, default=None)
    client_id: Mapped[str | None] = mapped_column(String(100), default=None)
    ip: Mapped[str | None] = mapped_column(String(64), default=None)
    # JSON object with event-specific facts (jti, family id, reason...); never a secret.
    detail: Mapped[str] = mapped_column(Text, default="{}")


class LoginAttempt(db.Model):
    """One login-throttle counter: password checks let through for one key in one fixed window
    (auth_server/throttle.py). Keys are SHA-256 fingerprints (usernames and addresses never
    appear raw), and the row is incremented with one atomic upsert before any password is
    hashed, so every worker and replica shares the count."""

    __tablename__ = "login_attempts"

    # "user-ip", "ip", "user-ip-long", "user": which limit the counter belongs to.
    scope: Mapped[str] = mapped_column(String(20), primary_key=True)
    key_fingerprint: Mapped[str] = mapped_column(String(SHA256_HEX), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # window_start + the window's length: `tokens purge` deletes rows past it.
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)
    count: Mapped[int] = mapped_column(Integer)


class DPoPProofSeen(db.Model):
    """A DPoP proof already used at the token endpoint (RFC 9449 §11.1): the digest of its key
    thumbprint and jti, kept until the proof is too old to be accepted anyway
    (shared/guard/dpop_replay.py inserts with ON CONFLICT DO NOTHING and prunes)."""

    __tablename__ = "dpop_proofs_seen"

    proof_hash: Mapped[str] = mapped_column(String(SHA256_HEX), primary_key=True)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)


class RevocationGeneration(db.Model):
    """One row whose `value` every revoking transaction increments as its last statement: how
    the authorization server's workers on other hosts learn that what they remember of
    introspected tokens may be out of date (auth_server/introspection_memory.py)."""

    __tablename__ = "revocation_generation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


# The row exists from the table's creation on (the migration inserts it too): the increment is
# an UPDATE, never an insert two first revocations could race on.
event.listen(
    RevocationGeneration.__table__,
    "after_create",
    DDL("INSERT INTO revocation_generation (id, value) VALUES (1, 0)"),
)
