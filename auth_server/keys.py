"""JWT signing keys: generation, encryption at rest, the next/active/retired life cycle, JWKS.

A key is published (JWKS) one rotation before it signs (`next`), signs while `active`, and stays
published while `retired` until every token it signed has expired. Each worker caches its
signing key for KEY_CACHE_SECONDS and re-reads it, so a rotation made by any process (the CLI,
another worker, another replica) reaches every worker within that time and without a restart.

The JWKS document is not served from that cache: `KeyRing.published_jwks` reads it from the
database on every request. A key signs only after it was stored (as `next`), so a JWKS answer
produced after a token was signed always holds the token's key, even when rotations follow
each other within KEY_CACHE_SECONDS (a cached JWKS could lag the database by that long while
another worker already signs with a key it does not list). Validators cache the JWKS, so its
requests are rare; the read is one indexed query over a handful of rows.

Reading the keys never writes: the key ring is read on unauthenticated paths (JWKS, /readyz)
and inside requests that hold a transaction, and on SQLite a second writer there would wait
behind the first. Keys are created and rotated by `prepare_signing_keys`, which runs at
start-up (create_app), in `flask --app auth_server keys prepare` (schedule it when
SIGNING_KEY_ROTATION_DAYS is set), in `keys rotate` and in `demo setup`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from joserfc import jwk
from joserfc.errors import SecurityWarning
from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from auth_server import audit
from auth_server.models import SigningKey
from shared.service.database import affected_rows, make_private_dirs
from shared.service.settings import ConfigurationError

log = logging.getLogger("tessera.auth.keys")

# joserfc flags "EdDSA" as superseded by the fully specified "Ed25519" (RFC 9864); we still
# publish EdDSA because that is what deployed JOSE libraries understand.
warnings.filterwarnings("ignore", message="EdDSA is deprecated", category=SecurityWarning)

KEY_TYPES: dict[str, tuple[Any, Any]] = {
    "ES256": ("EC", "P-256"),
    "RS256": ("RSA", 2048),
    "EdDSA": ("OKP", "Ed25519"),
}
PUBLISHED_STATES = ("next", "active", "retired")


def create_secret_file(path: str, content: bytes) -> bool:
    """Write `content` to `path` (mode 0600) unless a file is there; True if this call wrote it.

    Linking a finished temporary file makes the creation atomic: of several processes
    starting at once, exactly one secret wins and nobody reads a half-written file.
    """
    target = Path(path)
    make_private_dirs(target.parent)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temporary.write_bytes(content)
    temporary.chmod(0o600)
    try:
        os.link(temporary, target)
        return True
    except FileExistsError:
        return False
    finally:
        temporary.unlink(missing_ok=True)


class KeyCipher:
    """Encrypts private keys at rest with Fernet; several keys allow re-keying (first encrypts)."""

    def __init__(self, fernet_keys: list[str] | None):
        self._fernet = (
            MultiFernet([Fernet(k.strip()) for k in fernet_keys]) if fernet_keys else None
        )

    @property
    def enabled(self) -> bool:
        return self._fernet is not None

    @classmethod
    def from_settings(cls, env_keys: str | None, key_file: str) -> KeyCipher:
        if env_keys:
            raw = [k for k in env_keys.split(",") if k.strip()]
        elif Path(key_file).is_file():
            raw = [Path(key_file).read_text().strip()]
        else:
            return cls(None)
        try:
            return cls(raw)
        except ValueError as exc:
            raise ConfigurationError(
                "AUTH_KEY_ENCRYPTION_KEY must be Fernet keys (32 url-safe base64 bytes each); "
                "make one with: python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'"
            ) from exc

    @staticmethod
    def create_key_file(path: str) -> bool:
        """Write a new Fernet key to `path` unless one is there; True if this call wrote it."""
        return create_secret_file(path, Fernet.generate_key())

    def seal(self, pem: bytes) -> tuple[str, bool]:
        if self._fernet is None:
            return pem.decode(), False
        return self._fernet.encrypt(pem).decode(), True

    def open(self, stored: str, encrypted: bool) -> bytes:
        if not encrypted:
            return stored.encode()
        if self._fernet is None:
            raise ConfigurationError(
                "signing keys are encrypted but AUTH_KEY_ENCRYPTION_KEY is not set"
            )
        try:
            return self._fernet.decrypt(stored.encode())
        except InvalidToken as exc:
            raise ConfigurationError(
                "AUTH_KEY_ENCRYPTION_KEY cannot decrypt the stored signing keys"
            ) from exc


def generate_signing_key(alg: str, state: str, cipher: KeyCipher, now: int) -> SigningKey:
    kty, crv_or_size = KEY_TYPES[alg]
    key = jwk.generate_key(kty, crv_or_size, private=True)
    # RFC 7638 thumbprint: a kid derived from the key itself is unique and needs no counter.
    kid = key.thumbprint()
    public = {**key.as_dict(private=False), "kid": kid, "alg": alg, "use": "sig"}
    sealed, encrypted = cipher.seal(key.as_pem(private=True))
    return SigningKey(
        kid=kid,
        alg=alg,
        state=state,
        private_key=sealed,
        private_key_encrypted=encrypted,
        public_jwk=json.dumps(public, sort_keys=True),
        created_at=now,
        activated_at=now if state == "active" else None,
    )


def ensure_signing_keys(session: Session, alg: str, cipher: KeyCipher, now: int) -> bool:
    """Create the active and next key for `alg` if missing; safe when several processes race."""
    created = False
    for state in ("active", "next"):
        exists = session.scalar(
            select(SigningKey.kid).where(SigningKey.alg == alg, SigningKey.state == state)
        )
        if exists:
            continue
        session.add(generate_signing_key(alg, state, cipher, now))
        try:
            session.commit()
            created = True
            log.info("created %s signing key for %s", state, alg)
        except IntegrityError:
            # another process created it first: theirs is as good as ours
            session.rollback()
    return created


@dataclass(frozen=True)
class RotationResult:
    retired_kid: str
    active_kid: str
    next_kid: str


def rotate_signing_keys(
    session: Session,
    alg: str,
    cipher: KeyCipher,
    now: int,
    retire_for: int,
    expected_active: str | None = None,
    actor: str = "operator",
) -> RotationResult | None:
    """Promote next -> active, active -> retired, create a new next; None if another process
    rotated concurrently (the conditional UPDATE lost).

    `expected_active`: rotate only if that kid is still the active key. A worker that found
    the active key due for automatic rotation passes it, so a worker whose read predates
    another's rotation does not retire the key that was activated a moment ago.
    The `signing_key_rotated` audit event is written in the rotation's own transaction.
    """
    ensure_signing_keys(session, alg, cipher, now)
    active = session.scalar(
        select(SigningKey).where(SigningKey.alg == alg, SigningKey.state == "active")
    )
    upcoming = session.scalar(
        select(SigningKey).where(SigningKey.alg == alg, SigningKey.state == "next")
    )
    if active is None or upcoming is None:
        session.rollback()
        return None
    if expected_active is not None and active.kid != expected_active:
        session.rollback()
        return None
    retired = session.execute(
        update(SigningKey)
        .where(SigningKey.kid == active.kid, SigningKey.state == "active")
        .values(state="retired", retired_at=now, remove_after=now + retire_for)
        .execution_options(synchronize_session=False)
    )
    if affected_rows(retired) != 1:
        session.rollback()
        return None
    promoted = session.execute(
        update(SigningKey)
        .where(SigningKey.kid == upcoming.kid, SigningKey.state == "next")
        .values(state="active", activated_at=now)
        .execution_options(synchronize_session=False)
    )
    if affected_rows(promoted) != 1:
        session.rollback()
        return None
    new_next = generate_signing_key(alg, "next", cipher, now)
    session.add(new_next)
    purge_retired_keys(session, now)
    audit.record(
        session,
        "signing_key_rotated",
        actor=actor,
        at=now,
        alg=alg,
        retired=active.kid,
        active=upcoming.kid,
        next=new_next.kid,
    )
    session.commit()
    log.info("rotated %s signing keys: %s retired, %s active", alg, active.kid, upcoming.kid)
    return RotationResult(active.kid, upcoming.kid, new_next.kid)


def retire_other_algorithms(session: Session, alg: str, now: int, retire_for: int) -> None:
    """After SIGNING_ALG changed: the old algorithm's active key retires like a rotated one
    (published until its tokens expire) and its unused next key goes."""
    session.execute(
        update(SigningKey)
        .where(SigningKey.alg != alg, SigningKey.state == "active")
        .values(state="retired", retired_at=now, remove_after=now + retire_for)
        .execution_options(synchronize_session=False)
    )
    session.execute(delete(SigningKey).where(SigningKey.alg != alg, SigningKey.state == "next"))
    session.commit()


def purge_retired_keys(session: Session, now: int) -> int:
    result = session.execute(
        delete(SigningKey).where(SigningKey.state == "retired", SigningKey.remove_after <= now)
    )
    return affected_rows(result)


def rotation_due(active: SigningKey, now: int, rotation_days: int) -> bool:
    """SIGNING_KEY_ROTATION_DAYS (0: never) have passed since `active` started signing."""
    return bool(rotation_days) and (
        (active.activated_at or active.created_at) + rotation_days * 86400 <= now
    )


def prepare_signing_keys(
    session: Session,
    alg: str,
    cipher: KeyCipher,
    now: int,
    retire_for: int,
    rotation_days: int = 0,
) -> RotationResult | None:
    """The writing side of the life cycle: create the first keys of `alg` (retiring another
    algorithm's after SIGNING_ALG changed), or rotate when the active key is due. Safe when
    several processes run it at once. Returns the rotation if this call made one."""
    active = session.scalar(
        select(SigningKey).where(SigningKey.alg == alg, SigningKey.state == "active")
    )
    if active is None:
        ensure_signing_keys(session, alg, cipher, now)
        retire_other_algorithms(session, alg, now, retire_for)
        return None
    if not rotation_due(active, now, rotation_days):
        session.rollback()
        return None
    return rotate_signing_keys(
        session, alg, cipher, now, retire_for, expected_active=active.kid, actor="system"
    )


class Signer(NamedTuple):
    """The active signing key, as tokens are signed with it."""

    kid: str
    alg: str
    key: jwk.Key  # joserfc private key


@dataclass(frozen=True)
class LoadedKeys:
    loaded_at: float
    signing: Signer | None
    activated_at: int | None
    jwks: dict = field(default_factory=dict)


class KeyRing:
    """Per-process cache of the signing key and the JWKS, refreshed every `cache_seconds`.

    Read-only: it never creates or rotates keys (see the module's docstring)."""

    def __init__(
        self,
        session_factory: Callable[[], Session],
        cipher: KeyCipher,
        alg: str,
        cache_seconds: float,
        rotation_days: int = 0,
        clock: Callable[[], float] = time.time,
    ):
        self._session_factory = session_factory
        self._cipher = cipher
        self.alg = alg
        self._cache_seconds = cache_seconds
        self._rotation_days = rotation_days
        self._clock = clock
        self._lock = threading.Lock()
        self._loaded: LoadedKeys | None = None

    def signing_key(self) -> Signer:
        loaded = self._current()
        if loaded.signing is None:
            raise ConfigurationError(f"no active {self.alg} signing key")
        return loaded.signing

    def jwks(self) -> dict:
        """The JWKS as of this worker's cached key read (up to `cache_seconds` old)."""
        return self._current().jwks

    def published_jwks(self) -> dict:
        """The JWKS as the database holds it now: what the JWKS endpoint serves.

        Never older than any token signed before the call, whichever worker signed it (see the
        module's docstring). If the database cannot be read, the cached document is served
        (logged), as signing goes on with the cached key meanwhile."""
        try:
            with self._session_factory() as session:
                rows = self._published(session, int(self._clock()))
        except SQLAlchemyError:
            log.warning("could not read the published signing keys; serving the cached JWKS")
            return self._current().jwks
        if not any(k.state == "active" and k.alg == self.alg for k in rows):
            raise self._no_active_key()
        return {"keys": [k.public_jwk_dict for k in rows]}

    def _no_active_key(self) -> ConfigurationError:
        return ConfigurationError(
            f"no active {self.alg} signing key: the service creates it at start-up, "
            "or run `flask --app auth_server keys prepare`"
        )

    def invalidate(self) -> None:
        with self._lock:
            self._loaded = None

    def _current(self) -> LoadedKeys:
        loaded = self._loaded
        if loaded is not None and self._clock() - loaded.loaded_at < self._cache_seconds:
            return loaded
        with self._lock:
            loaded = self._loaded
            if loaded is None or self._clock() - loaded.loaded_at >= self._cache_seconds:
                try:
                    loaded = self._loaded = self._load()
                except SQLAlchemyError:
                    if loaded is None:
                        raise
                    # A database blip must not stop signing with a key we already hold; the
                    # next request tries the database again.
                    log.warning("could not re-read signing keys; using the cached ones")
        return loaded

    def _load(self) -> LoadedKeys:
        now = int(self._clock())
        with self._session_factory() as session:
            rows = self._published(session, now)
            active = next((k for k in rows if k.state == "active" and k.alg == self.alg), None)
            if active is None:
                raise self._no_active_key()
            if rotation_due(active, now, self._rotation_days):
                log.warning(
                    "signing key %s is due for rotation (SIGNING_KEY_ROTATION_DAYS); "
                    "run `flask --app auth_server keys prepare` (schedule it) or restart",
                    active.kid,
                )
            private = jwk.import_key(
                self._cipher.open(active.private_key, active.private_key_encrypted),
                KEY_TYPES[active.alg][0],
            )
            jwks = {"keys": [k.public_jwk_dict for k in rows]}
            return LoadedKeys(
                loaded_at=self._clock(),
                signing=Signer(active.kid, active.alg, private),
                activated_at=active.activated_at,
                jwks=jwks,
            )

    @staticmethod
    def _published(session: Session, now: int) -> list[SigningKey]:
        return list(
            session.scalars(
                select(SigningKey)
                .where(
                    SigningKey.state.in_(PUBLISHED_STATES),
                    or_(SigningKey.remove_after.is_(None), SigningKey.remove_after > now),
                )
                .order_by(SigningKey.created_at.desc(), SigningKey.kid)
            )
        )
