"""Self-contained client_credentials access tokens: the JWT is the token's whole state.

A client_credentials token has no user, no login and no refresh token: everything
introspection says of it is in its signed claims (RFC 9068). So it is not stored. Issuing one
writes nothing on the request's path (its `token_issued` audit row goes to the database in
the background, auth_server/audit_buffer.py), and introspection verifies its signature, then
reads what can end it early, in one statement: its client (gone, disabled, or its epoch moved
since the token was issued) and a revoked-jti row (RFC 7009 by its client).

How a token says it is one: its `jti` is `<random>.<client epoch>`. A stored token's jti is
`secrets.token_urlsafe` alone, which never holds a dot, so the two never mix, and the epoch the
client had at issuance is signed into the token. That is what keeps revocation final
(auth_server/epochs.py): disabling a client, or revoking everything of it, moves its epoch, and
every token carrying the older epoch is inactive from the moment that commits, whichever
worker issued it and however the issuance raced the revocation. Nothing else needs to know
the tokens: a revocation has no rows to update, and counts only the stored tokens it revoked.

What replaces "every issued token is known to introspection before the client holds it": a
token is valid at introspection if and only if its signature verifies with a published key of
this server (next, active or retired: keys.py keeps a retired key published until every token
it signed has expired), it is an `at+jwt` of this issuer, unexpired, of a client that exists,
is enabled and holds the epoch the token carries, and its jti is not revoked. Every such
token was issued by this server (only it holds the private keys), so it is known from the
moment it is signed. A client starts at a random epoch (clients.register_client), so the
tokens of a deleted client never match a client registered again under its client_id.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from joserfc import jwk
from joserfc.jws import JWSRegistry
from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection, Engine

from auth_server.models import Client, RevokedAccessToken
from auth_server.store import TokenRecord

# A re-read of the published keys for a kid this worker does not know is at most this often:
# a token signed with a key activated since the worker last read them is recognised within
# this long, and tokens with made-up kids cannot make every request read the keys.
KEY_REREAD_SECONDS = 1.0


def self_contained_jti(epoch: int) -> str:
    """A fresh jti for a self-contained token of a client whose epoch is `epoch`."""
    return f"{secrets.token_urlsafe(18)}.{epoch}"


def is_self_contained_jti(jti: str | None) -> bool:
    return jti is not None and "." in jti


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def unverified_self_contained_claims(token: str) -> dict | None:
    """The claims of `token` if it says it is a self-contained token, NOT verified: only to
    choose how to look it up. None: it is not one (a stored token, or garbage)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(_b64decode(parts[1]))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(claims, dict):
        return None
    jti = claims.get("jti")
    if not isinstance(jti, str) or "." not in jti:
        return None
    return claims


@dataclass(frozen=True)
class _Claims:
    jti: str
    epoch: int
    client_id: str
    subject: str
    scope: str
    audience: str
    issued_at: int
    expires_at: int
    dpop_jkt: str | None


def _valid_claims(claims: dict, issuer: str) -> _Claims | None:
    """The claims this server puts in a self-contained token, checked for shape; None if any
    is missing or of the wrong type (never issued by this server, whatever its signature)."""
    try:
        jti, client_id, sub, scope = (
            _text(claims, k) for k in ("jti", "client_id", "sub", "scope")
        )
        iat, exp = map(partial(_whole_number, claims), ("iat", "exp"))
        audience = _audience(claims.get("aud"))
        dpop_jkt = _thumbprint(claims.get("cnf"))
    except ValueError:
        return None
    epoch = jti.rpartition(".")[2]
    if claims.get("iss") != issuer or not epoch.isdigit() or len(epoch) > 10:
        return None
    return _Claims(jti, int(epoch), client_id, sub, scope, audience, iat, exp, dpop_jkt)


def _text(claims: dict, name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str):
        raise ValueError(name)
    return value


def _whole_number(claims: dict, name: str) -> int:
    value = claims.get(name)
    if type(value) is not int:  # not a bool, not a float
        raise ValueError(name)
    return value


def _audience(aud: object) -> str:
    if isinstance(aud, str):
        return aud
    if isinstance(aud, list) and aud and all(isinstance(a, str) for a in aud):
        return " ".join(aud)
    raise ValueError("aud")


def _thumbprint(cnf: object) -> str | None:
    if cnf is None:
        return None
    if not isinstance(cnf, dict) or not isinstance(cnf.get("jkt"), str):
        raise ValueError("cnf")
    return cnf["jkt"]


class TokenSignatures:
    """Verifies this server's access-token signatures against its published keys (the JWKS of
    its KeyRing: next, active and retired keys), each key imported once per process."""

    def __init__(
        self,
        jwks: Callable[[], dict],
        reread_keys: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ):
        self._jwks = jwks
        self._reread_keys = reread_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, tuple[str, Any]] = {}
        self._known_jwks: dict | None = None
        self._reread_at = float("-inf")

    def verified_claims(self, token: str) -> dict | None:
        """The claims of `token` if it is an `at+jwt` signed by a published key; else None."""
        header_segment, _, rest = token.partition(".")
        payload_segment, _, signature_segment = rest.partition(".")
        try:
            header = json.loads(_b64decode(header_segment))
            signature = _b64decode(signature_segment)
        except (ValueError, binascii.Error):
            return None
        if not isinstance(header, dict) or header.get("typ") != "at+jwt":
            return None
        kid, alg = header.get("kid"), header.get("alg")
        if not isinstance(kid, str) or not isinstance(alg, str):
            return None
        found = self._key(kid)
        if found is None or found[0] != alg or alg not in JWSRegistry.algorithms:
            # An alg other than the key's own (`none`, HS256 with the public key...) never
            # verifies: the key decides the algorithm, not the token.
            return None
        signing_input = f"{header_segment}.{payload_segment}".encode()
        if not JWSRegistry.algorithms[alg].verify(signing_input, signature, found[1]):
            return None
        try:
            claims = json.loads(_b64decode(payload_segment))
        except (ValueError, binascii.Error):
            return None
        return claims if isinstance(claims, dict) else None

    def _key(self, kid: str) -> tuple[str, Any] | None:
        self._refresh_from(self._jwks())
        found = self._keys.get(kid)
        if found is not None:
            return found
        # A key activated since this worker read the keys (another worker signs with it):
        # read them again, at most every KEY_REREAD_SECONDS.
        now = self._clock()
        with self._lock:
            if now - self._reread_at < KEY_REREAD_SECONDS:
                return None
            self._reread_at = now
        self._reread_keys()
        self._refresh_from(self._jwks())
        return self._keys.get(kid)

    def _refresh_from(self, jwks: dict) -> None:
        if jwks is self._known_jwks:
            return
        keys: dict[str, tuple[str, Any]] = {}
        for entry in jwks.get("keys", []):
            kid, alg = entry.get("kid"), entry.get("alg")
            if kid in self._keys:
                keys[kid] = self._keys[kid]
            elif isinstance(kid, str) and isinstance(alg, str):
                keys[kid] = (alg, jwk.import_key(entry))
        self._keys = keys
        self._known_jwks = jwks


_CLIENT_EPOCH = select(Client.token_epoch, Client.disabled).where(
    Client.client_id == bindparam("client_id")
)


class ClientEpochs:
    """Each client's epoch as the database has it now, for issuing: a registration cached by
    ClientDirectory may predate a `clients disable`, and a token minted with the old epoch
    would be dead on arrival, so the issuance refuses it instead (invalid_client, as before).

    `generation` is the introspection memory's (introspection_memory.py): while it has not
    moved, no revocation has committed on this host (nor, within its poll, anywhere), so an
    epoch read under it is still the epoch. Without it every issuance reads the epoch."""

    def __init__(
        self,
        engine: Engine,
        generation: Callable[[], tuple[int, int | None]] | None,
        max_entries: int = 1024,
    ):
        self._engine = engine
        self._generation = generation
        self._max_entries = max_entries
        self._entries: dict[str, tuple[tuple[int, int | None], int | None]] = {}

    def current(self, client_id: str) -> int | None:
        """The client's epoch now; None if it is disabled or gone."""
        generation = self._generation() if self._generation is not None else None
        if generation is not None:
            entry = self._entries.get(client_id)
            if entry is not None and entry[0] == generation:
                return entry[1]
        with self._engine.connect() as connection:
            row = connection.execute(_CLIENT_EPOCH, {"client_id": client_id}).one_or_none()
        epoch = None if row is None or row.disabled else row.token_epoch
        if generation is not None and generation[1] is not None:
            if len(self._entries) >= self._max_entries:
                self._entries.clear()
            self._entries[client_id] = (generation, epoch)
        return epoch


_STATE = select(
    Client.id,
    Client.token_epoch,
    Client.disabled,
    select(RevokedAccessToken.jti)
    .where(RevokedAccessToken.jti == bindparam("jti"))
    .scalar_subquery()
    .label("revoked_jti"),
).where(Client.client_id == bindparam("client_id"))


class SelfContainedTokens:
    """Looks up self-contained access tokens: the signature, then one statement of state."""

    def __init__(self, signatures: TokenSignatures, issuer: str):
        self.signatures = signatures
        self.issuer = issuer

    def find(self, connection: Connection, token: str) -> TokenRecord | None:
        """The record of `token` (revoked or not), or None: not a token this server issued."""
        verified = self.signatures.verified_claims(token)
        claims = _valid_claims(verified, self.issuer) if verified is not None else None
        if claims is None:
            return None
        state = connection.execute(
            _STATE, {"jti": claims.jti, "client_id": claims.client_id}
        ).one_or_none()
        if state is None:
            # Its client was deleted: nothing of it is active (and nothing can be revoked).
            return None
        return TokenRecord(
            kind="access_token",
            client_pk=state.id,
            client_id=claims.client_id,
            user_pk=None,
            username=None,
            subject=claims.subject,
            scope=claims.scope,
            audience=claims.audience,
            issued_at=claims.issued_at,
            expires_at=claims.expires_at,
            revoked=(
                state.disabled or state.token_epoch != claims.epoch or state.revoked_jti is not None
            ),
            jti=claims.jti,
            dpop_jkt=claims.dpop_jkt,
        )
