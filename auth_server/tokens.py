"""Issuing and rotating tokens: RFC 9068 JWT access tokens and opaque refresh tokens.

Every token is written to the database and committed *before* it is returned, so no client
ever holds a token that introspection does not know. Refresh tokens rotate on every use, and the
database, not a Python lock, decides which of several concurrent uses wins (RFC 9700 §4.14.2):
the family row is locked by a conditional UPDATE, then the presented token is consumed by
another; only the request whose UPDATE changed a row mints a successor. Any other use of a
consumed token is reuse and revokes the family, unless it falls inside the configured grace
window, in which case it gets the *same* successor back.

Authorization codes (RFC 6749 §4.1) follow the same rule: one conditional UPDATE consumes a
code, the login it starts is linked to it, and any later use of it that passes every check of a
real exchange revokes that login.

With a DPoP proof (RFC 9449) the access token carries `cnf.jkt`, the thumbprint of the proof's
key, and the response says `token_type: DPoP`. A public client's login and its authorization
code may be bound to a key too: then a refresh or the exchange that cannot prove that key is
refused like any stranger, and changes nothing.

Every issuance that starts from credentials (a password, a code, a client secret) re-checks the
revocation epochs it read with them before it writes (epochs.py), so a revocation that returned
leaves no token of a login that overlapped it.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc.jws import JWSRegistry
from joserfc.util import json_b64encode, urlsafe_b64encode
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from auth_server import audit
from auth_server.clients import ClientRecord
from auth_server.epochs import Steps, client_epoch_unchanged, no_steps, user_epoch_unchanged
from auth_server.keys import KeyRing, Signer
from auth_server.models import (
    AccessToken,
    AuthorizationCode,
    RefreshFamily,
    RefreshToken,
    User,
)
from auth_server.protocol import pkce
from auth_server.protocol.errors import InvalidClientError, InvalidGrantError
from auth_server.protocol.policy import allowed_scopes, resolve_audience, resolve_scope
from auth_server.revocation import revoke_family
from shared.protocol.digests import sha256_hex as hash_token
from shared.protocol.oauth_syntax import MAX_TOKEN_LENGTH
from shared.service.database import affected_rows

REFRESH_TOKEN_BYTES = 32  # 256 bits


def new_secret() -> str:
    return secrets.token_urlsafe(REFRESH_TOKEN_BYTES)


@dataclass(frozen=True)
class TokenPolicy:
    issuer: str
    access_token_ttl: int
    refresh_token_idle_ttl: int
    refresh_token_max_ttl: int
    refresh_reuse_grace: int
    authorization_code_ttl: int = 60


@dataclass(frozen=True)
class RequestContext:
    """Who is asking, for the audit trail and the account page's list of logins."""

    ip: str | None = None
    user_agent: str | None = None


class GraceSealer:
    """Encrypts a successor token response under a key derived from the *consumed* token.

    Only a caller holding the old refresh token can read it back, so keeping it for the grace
    window does not store a usable token at rest.
    """

    INFO = b"tessera refresh grace v1"

    @classmethod
    def _aead(cls, token: str) -> AESGCM:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=cls.INFO).derive(
            token.encode()
        )
        return AESGCM(key)

    @classmethod
    def seal(cls, token: str, response: dict) -> str:
        nonce = os.urandom(12)
        sealed = cls._aead(token).encrypt(nonce, json.dumps(response).encode(), None)
        return base64.urlsafe_b64encode(nonce + sealed).decode()

    @classmethod
    def open(cls, token: str, blob: str) -> dict | None:
        raw = base64.urlsafe_b64decode(blob.encode())
        try:
            return json.loads(cls._aead(token).decrypt(raw[:12], raw[12:], None))
        except (InvalidTag, ValueError):
            return None


class TokenService:
    """Each public method reads the signing key *before* it writes anything: the key ring
    only reads (auth_server/keys.py), but on its own connection, and a read that found the
    database busy must not be left waiting behind this transaction's write lock."""

    def __init__(
        self,
        session: Session,
        policy: TokenPolicy,
        keyring: KeyRing,
        clock: Callable[[], float] = time.time,
        steps: Steps = no_steps,
        forget_client: Callable[[str], None] = lambda _client_id: None,
    ):
        self.session = session
        self.policy = policy
        self.keyring = keyring
        self.clock = clock
        self.steps = steps
        # Drops a cached client registration whose epoch moved (ClientDirectory.forget).
        self.forget_client = forget_client

    # -- issuing ---------------------------------------------------------------------------

    def issue_client_token(
        self,
        client: ClientRecord,
        scope: Sequence[str],
        audience: Sequence[str],
        ctx: RequestContext,
        *,
        dpop_jkt: str | None = None,
    ) -> dict:
        """client_credentials (RFC 6749 §4.4): an access token and no refresh token (§4.4.3)."""
        signer = self.keyring.signing_key()
        now = int(self.clock())
        # An access token alone: its COMMIT need not wait for the disk (PostgreSQL's
        # synchronous_commit = off). Other sessions see it when COMMIT returns, as ever, so
        # introspection knows it before the client holds it; only a database crash in the
        # next fraction of a second (3 x wal_writer_delay at most) could forget it, and then
        # it is inactive everywhere, as if revoked: the client asks for another. Nothing that
        # a forgotten row would bring back (a refresh token, a consumed code) is in here.
        self._check_epochs(
            client, None, None, "client_credentials", now, ctx, asynchronous_commit=True
        )
        access, jti = self._mint_access_token(
            signer, client, None, None, scope, audience, now, dpop_jkt
        )
        audit.record(
            self.session,
            "token_issued",
            actor=f"client:{client.client_id}",
            at=now,
            client_id=client.client_id,
            ip=ctx.ip,
            grant_type="client_credentials",
            jti=jti,
        )
        self.steps("written")
        self.session.commit()
        return self._response(access, scope, dpop_jkt=dpop_jkt)

    def issue_user_tokens(
        self,
        client: ClientRecord,
        user: User,
        scope: Sequence[str],
        audience: Sequence[str],
        grant_type: str,
        ctx: RequestContext,
        *,
        user_epoch: int,
        dpop_jkt: str | None = None,
    ) -> dict:
        """A login: an access token and, if the client may refresh, a new refresh family.

        `user_epoch` is the user's token_epoch read with the password hash that was verified.
        """
        signer = self.keyring.signing_key()
        now = int(self.clock())
        self._check_epochs(client, user, user_epoch, grant_type, now, ctx)
        family = None
        if "refresh_token" in client.grant_type_list:
            family = self._start_family(client, user, scope, audience, now, ctx, dpop_jkt)
        return self._finish_login(
            signer, client, user, family, scope, audience, grant_type, now, ctx, dpop_jkt
        )

    def _finish_login(
        self,
        signer: Signer,
        client: ClientRecord,
        user: User,
        family: RefreshFamily | None,
        scope: Sequence[str],
        audience: Sequence[str],
        grant_type: str,
        now: int,
        ctx: RequestContext,
        dpop_jkt: str | None,
    ) -> dict:
        """Mint the tokens of a login (a refresh token if the client may refresh), audit, commit."""
        family_id = family.id if family is not None else None
        refresh_value = None
        if family is not None and "refresh_token" in client.grant_type_list:
            refresh_value = self._mint_refresh_token(family, now)
        access, jti = self._mint_access_token(
            signer, client, user, family_id, scope, audience, now, dpop_jkt
        )
        audit.record(
            self.session,
            "token_issued",
            actor=f"user:{user.subject}",
            at=now,
            user_id=user.id,
            client_id=client.client_id,
            ip=ctx.ip,
            grant_type=grant_type,
            jti=jti,
            family=family_id,
        )
        self.steps("written")
        self.session.commit()
        return self._response(access, scope, refresh_value, dpop_jkt)

    # -- authorization code (RFC 6749 §4.1, RFC 7636) -------------------------------------

    def issue_authorization_code(
        self,
        client: ClientRecord,
        user: User,
        redirect_uri: str,
        scope: Sequence[str],
        audience: Sequence[str],
        code_challenge: str,
        ctx: RequestContext,
        *,
        user_epoch: int,
        dpop_jkt: str | None = None,
    ) -> str:
        """Store a new code (as its digest) for this login and return it. Commits, with
        whatever the login added to the session (its audit event).

        `user_epoch` (read with the verified password) is stored with the code: the exchange
        refuses it if a revocation moved the epoch since.
        """
        now = int(self.clock())
        self._check_epochs(client, user, user_epoch, "authorization_code", now, ctx)
        code = new_secret()
        self.session.add(
            AuthorizationCode(
                code_hash=hash_token(code),
                client_pk=client.id,
                user_id=user.id,
                redirect_uri=redirect_uri,
                scope=" ".join(scope),
                audience=" ".join(audience),
                code_challenge=code_challenge,
                created_at=now,
                expires_at=now + self.policy.authorization_code_ttl,
                user_epoch=user_epoch,
                dpop_jkt=dpop_jkt,
                ip=ctx.ip,
                user_agent=ctx.user_agent,
            )
        )
        self.steps("written")
        self.session.commit()
        return code

    def redeem_authorization_code(
        self,
        client: ClientRecord,
        presented: str,
        redirect_uri: str,
        code_verifier: str | None,
        resources: Sequence[str],
        ctx: RequestContext,
        *,
        dpop_jkt: str | None = None,
    ) -> dict:
        """Exchange a code for an access token and, if the client may refresh, a refresh token.

        Every token issued from it belongs to a new refresh family linked to the code, so a
        second use of the code can revoke them all (RFC 6749 §4.1.2). A request that does not
        prove the code (another client, another redirect_uri, a wrong code_verifier) changes
        nothing, whether the code was used or not: only its rightful holder can consume it, and
        only a replay that would have been a valid exchange revokes the login it started
        (security finding 7). Expiry is checked after that: a replay is a replay, however late.
        """
        signer = self.keyring.signing_key()
        now = int(self.clock())
        row = self._find_code(presented)
        self.steps("read")
        if row is None:
            raise InvalidGrantError("The authorization code is invalid.")
        if row.client_pk != client.id:
            # RFC 6749 §4.1.3: bound to the client it was issued to.
            raise InvalidGrantError("The authorization code was issued to another client.")
        if redirect_uri != row.redirect_uri:
            # RFC 6749 §4.1.3: identical to the redirect_uri of the authorization request.
            raise InvalidGrantError("The redirect_uri differs from the authorization request.")
        if not pkce.verify(code_verifier, row.code_challenge):
            # RFC 7636 §4.6
            raise InvalidGrantError("The code_verifier does not match the code_challenge.")
        if row.dpop_jkt is not None and row.dpop_jkt != dpop_jkt:
            # RFC 9449 §10: the code is bound to the key named by dpop_jkt.
            raise InvalidGrantError("The DPoP key does not match the dpop_jkt of the request.")
        if row.consumed_at is not None:
            return self._code_reused(row, now, ctx)
        if row.expires_at <= now:
            raise InvalidGrantError("The authorization code has expired.")
        self.steps("verified")
        user = row.user
        scope, allowed_audience = _still_allowed(client, user, row.scope, row.audience)
        audience = resolve_audience(resources, allowed_audience)
        # Before consuming: the user row is locked before the code row, as a revocation does.
        self._check_epochs(client, user, row.user_epoch, "authorization_code", now, ctx)

        if not self._consume(AuthorizationCode, row.id, now):
            # Lost the race: a concurrent exchange consumed it between our read and our update.
            self.session.expire_all()
            reused_code = self._find_code(presented)
            assert reused_code is not None  # consumed rows stay while their family lives
            return self._code_reused(reused_code, now, ctx)

        # The login happened in the browser at the authorization endpoint, not here.
        browser = RequestContext(ip=row.ip, user_agent=row.user_agent)
        family = self._start_family(client, user, scope, audience, now, browser, dpop_jkt)
        self.session.execute(
            update(AuthorizationCode)
            .where(AuthorizationCode.id == row.id)
            .values(family_id=family.id)
            .execution_options(synchronize_session=False)
        )
        return self._finish_login(
            signer, client, user, family, scope, audience, "authorization_code", now, ctx, dpop_jkt
        )

    def _code_reused(self, row: AuthorizationCode, now: int, ctx: RequestContext) -> dict:
        revoked = row.family_id is not None and revoke_family(
            self.session, row.family_id, "authorization_code_reuse", now
        )
        audit.record(
            self.session,
            "authorization_code_reuse_detected",
            actor=f"client:{row.client.client_id}",
            at=now,
            user_id=row.user_id,
            client_id=row.client.client_id,
            ip=ctx.ip,
            family=row.family_id,
            family_revoked=revoked,
            consumed_at=row.consumed_at,
        )
        self.session.commit()
        raise InvalidGrantError(
            "The authorization code was already used; every token issued from it is now revoked."
        )

    def _find_code(self, presented: str) -> AuthorizationCode | None:
        if len(presented) > MAX_TOKEN_LENGTH:
            return None
        return self.session.scalar(
            select(AuthorizationCode).where(AuthorizationCode.code_hash == hash_token(presented))
        )

    # -- refresh (RFC 6749 §6, RFC 9700 §4.14.2) -------------------------------------------

    def rotate_refresh_token(
        self,
        client: ClientRecord,
        presented: str,
        requested_scope: str | None,
        resources: Sequence[str],
        ctx: RequestContext,
        *,
        dpop_jkt: str | None = None,
    ) -> dict:
        signer = self.keyring.signing_key()
        now = int(self.clock())
        row = self._find_refresh_token(presented)
        self.steps("read")
        if row is None:
            raise InvalidGrantError("The refresh token is invalid.")
        family = row.family
        if family.client_pk != client.id:
            # RFC 6749 §6: bound to the client it was issued to; a stranger changes nothing.
            raise InvalidGrantError("The refresh token was issued to another client.")
        if family.dpop_jkt is not None and family.dpop_jkt != dpop_jkt:
            # RFC 9449 §5: a public client's refresh token is bound to its DPoP key; without
            # that key the presenter is a stranger, and a stranger changes nothing.
            raise InvalidGrantError("The refresh token is bound to another DPoP key.")
        if family.revoked_at is not None:
            raise InvalidGrantError("The refresh token has been revoked.")
        if row.consumed_at is not None:
            return self._reused(row, presented, now, ctx)
        if self._idle_deadline(row, family) <= now or family.expires_at <= now:
            raise InvalidGrantError("The refresh token has expired; log in again.")
        user = family.user
        # RFC 6749 §6: the new access token may be narrower; the refresh token keeps the family's
        # scope.
        allowed, allowed_audience = _still_allowed(client, user, family.scope, family.audience)
        scope = resolve_scope(requested_scope, allowed)
        audience = resolve_audience(resources, allowed_audience)
        self.steps("verified")

        # Lock the family first: a concurrent revocation or refresh of the same family waits here.
        # It is also what orders a refresh with revocations of the user or client (they revoke
        # the family row), so refresh needs no epoch check (epochs.py).
        locked = self.session.execute(
            update(RefreshFamily)
            .where(RefreshFamily.id == family.id, RefreshFamily.revoked_at.is_(None))
            .values(last_used_at=now)
            .execution_options(synchronize_session=False)
        )
        if affected_rows(locked) != 1:
            self.session.rollback()
            raise InvalidGrantError("The refresh token has been revoked.")
        self.steps("guarded")
        if not self._consume(RefreshToken, row.id, now):
            # Lost the race: another request consumed it between our read and our update.
            self.session.expire_all()
            reused_token = self._find_refresh_token(presented)
            assert reused_token is not None  # consumed rows stay while their family lives
            return self._reused(reused_token, presented, now, ctx)

        refresh_value = self._mint_refresh_token(family, now)
        access, jti = self._mint_access_token(
            signer, client, user, family.id, scope, audience, now, dpop_jkt
        )
        response = self._response(access, scope, refresh_value, dpop_jkt)
        if self.policy.refresh_reuse_grace:
            self.session.execute(
                update(RefreshToken)
                .where(RefreshToken.id == row.id)
                .values(grace_response=GraceSealer.seal(presented, response))
                .execution_options(synchronize_session=False)
            )
        audit.record(
            self.session,
            "token_refreshed",
            actor=f"user:{user.subject}",
            at=now,
            user_id=user.id,
            client_id=client.client_id,
            ip=ctx.ip,
            jti=jti,
            family=family.id,
        )
        self.steps("written")
        self.session.commit()
        return response

    def _reused(
        self,
        row: RefreshToken,
        presented: str,
        now: int,
        ctx: RequestContext,
    ) -> dict:
        grace = self.policy.refresh_reuse_grace
        in_grace = row.consumed_at is not None and now - row.consumed_at <= grace
        if grace and in_grace and row.grace_response:
            response = GraceSealer.open(presented, row.grace_response)
            if response is not None:
                self.session.rollback()
                return response
        family = row.family
        revoke_family(self.session, family.id, "refresh_reuse", now)
        audit.record(
            self.session,
            "refresh_token_reuse_detected",
            actor=f"client:{family.client.client_id}",
            at=now,
            user_id=family.user_id,
            client_id=family.client.client_id,
            ip=ctx.ip,
            family=family.id,
            consumed_at=row.consumed_at,
        )
        self.steps("revoked")
        self.session.commit()
        raise InvalidGrantError(
            "The refresh token was already used; every token of this login is now revoked."
        )

    # -- helpers ---------------------------------------------------------------------------

    def _check_epochs(
        self,
        client: ClientRecord,
        user: User | None,
        user_epoch: int | None,
        grant_type: str,
        now: int,
        ctx: RequestContext,
        *,
        asynchronous_commit: bool = False,
    ) -> None:
        """Refuse the issuance if the user or the client was revoked since its credentials were
        read; otherwise hold the lock that keeps any revocation from committing before this
        transaction does (epochs.py). Call before writing any token, family or code row."""
        if user is not None and not user_epoch_unchanged(self.session, user.id, user_epoch):
            self._refuse(client, user, grant_type, "user_revoked", now, ctx)
            raise InvalidGrantError(
                "The user's tokens were revoked while this request was in progress; log in again."
            )
        if not client_epoch_unchanged(
            self.session, client.id, client.token_epoch, asynchronous_commit=asynchronous_commit
        ):
            self._refuse(client, user, grant_type, "client_revoked", now, ctx)
            self.forget_client(client.client_id)
            raise InvalidClientError(description="Client authentication failed.", status_code=401)
        self.steps("guarded")

    def _refuse(
        self,
        client: ClientRecord,
        user: User | None,
        grant_type: str,
        reason: str,
        now: int,
        ctx: RequestContext,
    ) -> None:
        """Roll back what the issuance wrote and audit the refusal on its own."""
        user_id = user.id if user is not None else None
        subject = user.subject if user is not None else None
        self.session.rollback()
        audit.record(
            self.session,
            "issuance_refused_revoked",
            actor=f"user:{subject}" if subject else f"client:{client.client_id}",
            at=now,
            user_id=user_id,
            client_id=client.client_id,
            ip=ctx.ip,
            grant_type=grant_type,
            reason=reason,
        )
        self.session.commit()

    def _consume(
        self, model: type[AuthorizationCode | RefreshToken], row_id: int, now: int
    ) -> bool:
        """Mark a single-use credential used; False if another request got there first (the
        database decides, so this holds across workers and replicas)."""
        consumed = self.session.execute(
            update(model)
            .where(model.id == row_id, model.consumed_at.is_(None))
            .values(consumed_at=now)
            .execution_options(synchronize_session=False)
        )
        return affected_rows(consumed) == 1

    def _idle_deadline(self, row: RefreshToken, family: RefreshFamily) -> int:
        """When the login idles out: REFRESH_TOKEN_IDLE_TTL after the later of its last refresh
        (the token's own expiry) and its last recorded activity (activity.py)."""
        return max(row.expires_at, family.last_active_at + self.policy.refresh_token_idle_ttl)

    def _find_refresh_token(self, presented: str) -> RefreshToken | None:
        return self.session.scalar(
            select(RefreshToken).where(RefreshToken.token_hash == hash_token(presented))
        )

    def _start_family(
        self,
        client: ClientRecord,
        user: User,
        scope: Sequence[str],
        audience: Sequence[str],
        now: int,
        ctx: RequestContext,
        dpop_jkt: str | None = None,
    ) -> RefreshFamily:
        family = RefreshFamily(
            ip=ctx.ip,
            user_agent=ctx.user_agent,
            user_id=user.id,
            client_pk=client.id,
            scope=" ".join(scope),
            audience=" ".join(audience),
            created_at=now,
            expires_at=now + self.policy.refresh_token_max_ttl,
            last_used_at=now,
            # RFC 9449 §5: only a public client's refresh token is bound to its key; a
            # confidential client's is bound to its authentication already.
            dpop_jkt=dpop_jkt if client.client_type == "public" else None,
            last_active_at=now,
        )
        self.session.add(family)
        self.session.flush()
        return family

    def _mint_refresh_token(self, family: RefreshFamily, now: int) -> str:
        value = new_secret()
        self.session.add(
            RefreshToken(
                token_hash=hash_token(value),
                family_id=family.id,
                issued_at=now,
                # Sliding idle window, never past the family's absolute lifetime.
                expires_at=min(now + self.policy.refresh_token_idle_ttl, family.expires_at),
            )
        )
        return value

    def _mint_access_token(
        self,
        signer: Signer,
        client: ClientRecord,
        user: User | None,
        family_id: int | None,
        scope: Sequence[str],
        audience: Sequence[str],
        now: int,
        dpop_jkt: str | None = None,
    ) -> tuple[str, str]:
        subject = user.subject if user else client.client_id
        token, jti, expires_at = access_token_jwt(
            signer, self.policy, subject, client.client_id, scope, audience, now, dpop_jkt
        )
        self.session.add(
            AccessToken(
                jti=jti,
                token_hash=hash_token(token),
                client_pk=client.id,
                user_id=user.id if user else None,
                family_id=family_id,
                scope=" ".join(scope),
                audience=" ".join(audience),
                issued_at=now,
                expires_at=expires_at,
                dpop_jkt=dpop_jkt,
            )
        )
        return token, jti

    def _response(
        self,
        access: str,
        scope: Sequence[str],
        refresh: str | None = None,
        dpop_jkt: str | None = None,
    ) -> dict:
        return token_response(self.policy, access, scope, refresh, dpop_jkt)


def access_token_jwt(
    signer: Signer,
    policy: TokenPolicy,
    subject: str,
    client_id: str,
    scope: Sequence[str],
    audience: Sequence[str],
    now: int,
    dpop_jkt: str | None = None,
    jti: str | None = None,
) -> tuple[str, str, int]:
    """A signed RFC 9068 access token: (the JWT, its jti, its expiry). `jti`: a self-contained
    token's (auth_server/self_contained.py); else a random one."""
    if jti is None:
        jti = secrets.token_urlsafe(18)
    expires_at = now + policy.access_token_ttl
    # RFC 9068 §2.2: iss, exp, aud, sub, client_id, iat, jti; scope per §2.2.3.
    claims: dict[str, object] = {
        "iss": policy.issuer,
        "sub": subject,
        "aud": audience[0] if len(audience) == 1 else list(audience),
        "client_id": client_id,
        "scope": " ".join(scope),
        "iat": now,
        "exp": expires_at,
        "jti": jti,
    }
    if dpop_jkt is not None:
        # RFC 9449 §6.1: the confirmation claim names the key the token is bound to.
        claims["cnf"] = {"jkt": dpop_jkt}
    return sign_jwt(signer, claims), jti, expires_at


def _header_segment(kid: str, alg: str) -> bytes:
    # RFC 9068 §2.1: typ "at+jwt", so an ID token can never be mistaken for an access token.
    # Encoded as joserfc's jwt.encode encodes it (typ first, compact JSON).
    return json_b64encode({"typ": "at+jwt", "alg": alg, "kid": kid})


# The JOSE header of each signing key, encoded once (a handful of keys in a process's life).
_HEADER_SEGMENTS: dict[tuple[str, str], bytes] = {}


def sign_jwt(signer: Signer, claims: dict) -> str:
    """What `joserfc.jwt.encode(header, claims, key, algorithms=[alg])` returns, byte for byte
    (tests/auth_server/test_tokens_signing.py), without building a registry and re-encoding
    the header for every token."""
    kid, alg, key = signer
    header = _HEADER_SEGMENTS.get((kid, alg))
    if header is None:
        if len(_HEADER_SEGMENTS) > 16:
            _HEADER_SEGMENTS.clear()
        header = _HEADER_SEGMENTS[kid, alg] = _header_segment(kid, alg)
    payload = json.dumps(claims, ensure_ascii=False, separators=(",", ":")).encode()
    signing_input = header + b"." + urlsafe_b64encode(payload)
    signature = JWSRegistry.algorithms[alg].sign(signing_input, key)
    return (signing_input + b"." + urlsafe_b64encode(signature)).decode()


def token_response(
    policy: TokenPolicy,
    access: str,
    scope: Sequence[str],
    refresh: str | None = None,
    dpop_jkt: str | None = None,
) -> dict:
    # RFC 6749 §5.1; scope always included since it may differ from the request.
    body = {
        "access_token": access,
        # RFC 9449 §5: a token bound to a DPoP key is of type DPoP.
        "token_type": "DPoP" if dpop_jkt is not None else "Bearer",
        "expires_in": policy.access_token_ttl,
        "scope": " ".join(scope),
    }
    if refresh:
        body["refresh_token"] = refresh
    return body


def _still_allowed(
    client: ClientRecord, user: User, scope: str, audience: str
) -> tuple[list[str], list[str]]:
    """What a grant made earlier (a code, a login) may still carry: less anything the client or
    the user lost since, and nothing for a user who has been disabled."""
    if user.disabled:
        raise InvalidGrantError("The user is disabled.")
    scopes = allowed_scopes(scope.split(), client.scope_list, user.scope_limit)
    return scopes, [a for a in audience.split() if a in client.audience_list]
