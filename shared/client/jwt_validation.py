"""Local validation of Tessera's RFC 9068 JWT access tokens against the issuer's JWKS.

For resource servers (and third parties) that check a token without calling introspection, or
before calling it. One ``JWKSValidator`` per process, shared by every thread::

    validator = JWKSValidator(issuer, f"{issuer}/.well-known/jwks.json", "urn:tessera:notes")
    try:
        claims = validator.validate(token)
    except InvalidToken as exc:      # 401, error="invalid_token", error_description=str(exc)
        ...
    except JWKSUnavailable:          # 503: we cannot tell, the token may well be valid
        ...

What it checks: the protected header first (``typ`` at+jwt, no ``crit``, a ``kid`` that the JWKS
publishes, and a header ``alg`` equal to the ``alg`` of that JWK: the JWK's algorithm is the only
one a key may verify, which defeats ``alg: none`` and HS256-with-the-public-key confusion), then
the signature with exactly that algorithm, then the RFC 9068 §2.2 claims.

What it cannot check: revocation. A locally valid token may have been revoked at the
authorization server (logout, password change, disabled user); call introspection where that
matters.

The JWKS is cached for ``jwks_cache_seconds``. An unknown ``kid`` triggers a re-fetch, at most
once per ``min_refetch_interval``, so a freshly rotated key is picked up while a stream of
garbage kids cannot make us hammer the authorization server. When the last fetch was less than
``min_refetch_interval`` ago and the next allowed one is at most ``max_unknown_kid_wait`` (1 s)
away, the validation waits for it and re-fetches once, instead of refusing at once: that fetch
may have come just before a rotation (two rotations in a row activate a key that was published
a moment earlier), and a JWKS fetched after the token was signed always lists its key. Every
caller waiting at that moment shares one fetch, so unknown kids, garbage or not, still cost at
most one fetch per interval; when the next fetch is further away, the token is refused at once,
as it always was, so forged kids cannot hold a request thread for long. Tokens that could not
pass the claim checks anyway (another issuer or audience, expired) are refused at once, without
waiting. If the fetch made for the token itself finds no such kid, the token is refused at
once. If a re-fetch fails, the last key set that was fetched keeps serving the kids it holds
for ``stale_if_error`` more seconds. A fetch ends within ``total_timeout`` seconds and reads at
most ``max_jwks_bytes``, else it is JWKSUnavailable: the fetch holds the lock that validations
of an unknown kid wait on.
"""

# Why the RFC 9068 §2.2 claim checks (_check_claims) are ours and not joserfc's
# JWTClaimsRegistry, which checks iss, aud, exp, nbf and iat with a leeway too: the resource
# servers send str(InvalidToken) as the RFC 6750 error_description, and ours names the failure
# in one stable sentence per claim (expired, wrong audience, no jti), checked in a fixed order,
# where joserfc's messages are its own and change between its versions; joserfc's essential
# claims accept any non-null value, where sub, client_id and jti must be non-empty strings
# here; and our clock is a float the tests move, where joserfc's `now` is whole seconds. The
# signature, header and key checks do build on joserfc (jwt.decode with a one-algorithm
# registry).

from __future__ import annotations

import base64
import binascii
import copy
import logging
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeGuard

import requests
from joserfc import jwt
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import ECKey, OKPKey, RSAKey, import_key
from joserfc.jws import JWSRegistry
from urllib3.exceptions import HTTPError

from shared.client.http import service_session
from shared.protocol import json_input
from shared.protocol.deadline_http import deadline
from shared.protocol.oauth_syntax import MAX_TOKEN_LENGTH

log = logging.getLogger("tessera.jwt_validation")

# joserfc flags "EdDSA" as superseded by "Ed25519" (RFC 9864); Tessera signs with EdDSA because
# that is what deployed JOSE libraries understand (see auth_server/keys.py).
warnings.filterwarnings("ignore", message="EdDSA is deprecated", category=SecurityWarning)

# The only algorithms a Tessera key can carry, each with the key type it must have.
ALLOWED_ALGS = {"ES256": (ECKey, "P-256"), "RS256": (RSAKey, None), "EdDSA": (OKPKey, "Ed25519")}
ACCEPTED_TYPES = ("at+jwt", "application/at+jwt")  # RFC 9068 §4, compared case-insensitively
MIN_RSA_BITS = 2048


def _without_warning(alg: Any) -> Any:
    quiet = copy.copy(alg)
    quiet.security_warning = None
    return quiet


class _Registry(JWSRegistry):
    """joserfc's JWS registry holding only our algorithms, and EdDSA without its warning: a
    process-wide warnings filter is not enough where something resets the filters (pytest does,
    around every import and test), and warnings.catch_warnings is not thread-safe."""

    algorithms = {name: _without_warning(JWSRegistry.algorithms[name]) for name in ALLOWED_ALGS}
    recommended: list[str] = []


# One registry per algorithm: each allows exactly that algorithm (read-only, so thread-safe).
_REGISTRIES = {name: _Registry(algorithms=[name]) for name in ALLOWED_ALGS}


class InvalidToken(Exception):
    """The token is not a valid access token for us (answer 401 invalid_token).

    ``str(exc)`` is a fixed sentence with no quote or backslash, safe to send as an RFC 6750
    ``error_description``; it never echoes any part of the token.
    """

    @property
    def description(self) -> str:
        return str(self.args[0]) if self.args else "The access token is invalid."


class JWKSUnavailable(Exception):
    """The JWKS could not be fetched (or was malformed), so the token cannot be judged (503)."""


@dataclass(frozen=True)
class _KeySet:
    keys: dict[str, tuple[str, Any]]  # kid -> (alg, joserfc public key)
    fetched_at: float


def _b64decode(segment: str) -> bytes:
    # Strict: a lenient decoder skips stray characters, and the header we check must be the
    # very header the signature covers.
    if "=" in segment:
        raise ValueError("padded base64url")
    return base64.b64decode(segment + "=" * (-len(segment) % 4), altchars=b"-_", validate=True)


def _parse_header(token: str) -> dict[str, Any]:
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("The access token is malformed.")
    parts = token.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        raise InvalidToken("The access token is not a signed JWT.")
    try:
        header = json_input.loads(_b64decode(parts[0]))
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidToken("The access token header is malformed.") from exc
    if not isinstance(header, dict):
        raise InvalidToken("The access token header is malformed.")
    if "crit" in header:
        raise InvalidToken("The access token uses unsupported critical header parameters.")
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in ACCEPTED_TYPES:
        raise InvalidToken("The token is not an access token (typ must be at+jwt).")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ALLOWED_ALGS:
        raise InvalidToken("The access token uses an unsupported signing algorithm.")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidToken("The access token has no key id.")
    return header


def _number(value: Any) -> TypeGuard[float]:
    # json.loads accepts NaN and Infinity; an infinite exp must not mean "never expires".
    return json_input.finite_number(value) is not None


def _present(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


class JWKSValidator:
    """Validates RFC 9068 access tokens of one issuer for one audience; thread-safe."""

    def __init__(
        self,
        issuer: str,
        jwks_uri: str,
        audience: str,
        *,
        leeway: float = 30,
        jwks_cache_seconds: float = 300,
        min_refetch_interval: float = 10,
        stale_if_error: float = 3600,
        session: requests.Session | None = None,
        timeout: float | tuple[float, float] = (1, 2),
        total_timeout: float = 3.0,
        max_jwks_bytes: int = 256 * 1024,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        max_unknown_kid_wait: float = 1.0,
    ) -> None:
        if not issuer or not jwks_uri or not audience:
            raise ValueError("issuer, jwks_uri and audience are required")
        self.issuer = issuer
        self.jwks_uri = jwks_uri
        self.audience = audience
        self.leeway = leeway
        self.jwks_cache_seconds = jwks_cache_seconds
        self.min_refetch_interval = min_refetch_interval
        # An unknown kid waits for the next allowed fetch only if it comes within this long;
        # else it is refused at once, as before: a stream of forged tokens with made-up kids
        # cannot hold a request thread for the whole min_refetch_interval.
        self.max_unknown_kid_wait = max_unknown_kid_wait
        self.stale_if_error = stale_if_error
        self.timeout = timeout
        # The fetch holds the lock every validation of an unknown kid waits for: a JWKS
        # endpoint that trickles or floods its answer must not stall them longer than this.
        self.total_timeout = total_timeout
        self.max_jwks_bytes = max_jwks_bytes
        self._clock = clock
        self._sleep = sleep  # waits out min_refetch_interval for an unknown kid (tests pass theirs)
        self._owns_session = session is None
        self._session = session or service_session()
        self._lock = threading.Lock()
        self._keyset: _KeySet | None = None
        self._last_attempt: float | None = None  # last fetch, successful or not
        self._last_failed = False
        self._fetches_started = 0  # lets a caller that waited see whether a fetch began since
        self.fetch_count = 0  # successful and failed fetches, for metrics and tests

    def close(self) -> None:
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> JWKSValidator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- validation ------------------------------------------------------------------------

    def validate(self, token: str) -> dict[str, Any]:
        """The token's claims if it is a valid access token for our issuer and audience.

        Raises InvalidToken (401) or JWKSUnavailable (503).
        """
        header = _parse_header(token)
        jwk_alg, key = self._key(header["kid"], token)
        # The JWK's own alg is the one algorithm this key verifies.
        if header["alg"] != jwk_alg:
            raise InvalidToken("The access token algorithm does not match its key.")
        try:
            decoded = jwt.decode(token, key, registry=_REGISTRIES[jwk_alg])
        except (JoseError, ValueError, TypeError) as exc:
            raise InvalidToken("The access token signature is invalid.") from exc
        except RecursionError as exc:
            # joserfc parses the claims with json.loads too: a deeply nested payload.
            raise InvalidToken("The access token is malformed.") from exc
        if decoded.header != header:  # never happens unless the two parsers disagree
            raise InvalidToken("The access token header is malformed.")
        claims = decoded.claims
        self._check_claims(claims)
        return claims

    def _check_claims(self, claims: dict[str, Any]) -> None:
        now = self._clock()
        if claims.get("iss") != self.issuer:
            raise InvalidToken("The access token was issued by another issuer.")
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud
        if not isinstance(audiences, list) or self.audience not in audiences:
            raise InvalidToken("The access token is not meant for this resource.")
        exp = claims.get("exp")
        if not _number(exp):
            raise InvalidToken("The access token has no valid expiry.")
        if exp <= now - self.leeway:
            raise InvalidToken("The access token has expired.")
        iat = claims.get("iat")
        if not _number(iat):
            raise InvalidToken("The access token has no valid issue time.")
        if iat > now + self.leeway:
            raise InvalidToken("The access token was issued in the future.")
        if "nbf" in claims:
            nbf = claims["nbf"]
            if not _number(nbf):
                raise InvalidToken("The access token has an invalid not-before time.")
            if nbf > now + self.leeway:
                raise InvalidToken("The access token is not valid yet.")
        for name in ("sub", "client_id", "jti"):
            if not _present(claims.get(name)):
                raise InvalidToken(f"The access token has no {name} claim.")

    # -- the key set -----------------------------------------------------------------------

    def _key(self, kid: str, token: str) -> tuple[str, Any]:
        keyset = self._keyset
        now = self._clock()
        if keyset is not None and now - keyset.fetched_at < self.jwks_cache_seconds:
            found = keyset.keys.get(kid)
            if found is not None:
                return found
        with self._lock:
            found, wait_until, fetches_started = self._key_or_refetch(kid)
        if found is not None:
            return found
        # The kid is unknown and the JWKS was fetched less than min_refetch_interval ago,
        # perhaps just before a rotation: wait out the interval and re-fetch once (module
        # docstring), unless the token would be refused anyway.
        if not self._plausible(token) or wait_until - self._clock() > self.max_unknown_kid_wait:
            raise InvalidToken("The access token was signed by an unknown key.")
        budget = min(self.min_refetch_interval, self.max_unknown_kid_wait)  # the longest wait
        for _ in range(2):  # a second, short sleep only if the first woke a hair early
            remaining = min(wait_until - self._clock(), budget)
            if remaining <= 0:
                break
            self._sleep(remaining)
            budget -= remaining
        with self._lock:
            if self._fetches_started == fetches_started and self._clock() >= wait_until:
                # Nobody fetched since we began to wait: this caller fetches for everyone.
                self._keyset = self._fetch()
            # else another waiter's fetch began after this token was signed: use its keys
            # (or the clock did not reach the end of the interval: fetch nothing early).
            keyset = self._keyset
            if self._fetches_started != fetches_started and self._last_failed:
                raise JWKSUnavailable("the JWKS was unavailable at the last attempt")
            if keyset is not None and kid in keyset.keys:
                return keyset.keys[kid]
        raise InvalidToken("The access token was signed by an unknown key.")

    def _key_or_refetch(self, kid: str) -> tuple[tuple[str, Any] | None, float, int]:
        """(the key, 0, 0); or (None, when a re-fetch is allowed, fetches so far) when the kid
        is unknown to a key set fetched less than min_refetch_interval ago. Raises when there
        is nothing to wait for. Called with the lock held."""
        # Another thread may have refreshed while we waited for the lock.
        keyset = self._keyset
        now = self._clock()
        fresh = keyset is not None and now - keyset.fetched_at < self.jwks_cache_seconds
        if fresh and keyset is not None and kid in keyset.keys:
            return keyset.keys[kid], 0, 0
        may_fetch = (
            self._last_attempt is None or now - self._last_attempt >= self.min_refetch_interval
        )
        error: JWKSUnavailable | None = None
        if may_fetch:
            try:
                keyset = self._keyset = self._fetch()
                fresh = True
            except JWKSUnavailable as exc:
                error = exc
        elif self._last_failed:
            error = JWKSUnavailable("the JWKS was unavailable at the last attempt")
        if keyset is not None and kid in keyset.keys:
            usable_for = self.jwks_cache_seconds + (self.stale_if_error if error else 0)
            if fresh or now - keyset.fetched_at < usable_for:
                return keyset.keys[kid], 0, 0
        if error is not None:
            raise error
        if may_fetch or self._last_attempt is None:
            # Fetched for this very token, after it was signed: the key is not published.
            raise InvalidToken("The access token was signed by an unknown key.")
        return None, self._last_attempt + self.min_refetch_interval, self._fetches_started

    def _plausible(self, token: str) -> bool:
        """Whether the token's claims, read without checking the signature, would pass: only
        a token that could be valid is worth waiting for a re-fetch. Refusing on unverified
        claims is safe; accepting is never done on them."""
        try:
            claims = json_input.loads(_b64decode(token.split(".")[1]))
            if not isinstance(claims, dict):
                return False
            self._check_claims(claims)
        except (ValueError, binascii.Error, UnicodeDecodeError, InvalidToken):
            return False
        return True

    def _fetch(self) -> _KeySet:
        """GET the JWKS; called with the lock held."""
        self._last_attempt = self._clock()
        self._fetches_started += 1
        self.fetch_count += 1
        self._last_failed = True
        deadline_at = time.monotonic() + self.total_timeout
        try:
            # With service_session() the deadline also bounds a trickled status line and
            # headers (shared/protocol/deadline_http.py); with any session, the body loop checks it.
            with deadline(deadline_at):
                response = self._session.get(
                    self.jwks_uri,
                    timeout=self.timeout,
                    headers={"Accept": "application/json"},
                    stream=True,
                )
                with response:
                    if response.status_code != 200:
                        log.error(
                            "JWKS fetch from %s answered %s", self.jwks_uri, response.status_code
                        )
                        raise JWKSUnavailable(f"the JWKS endpoint answered {response.status_code}")
                    content = self._read_document(response, deadline_at)
        except (requests.RequestException, HTTPError, OSError) as exc:
            log.error("JWKS fetch from %s failed: %s", self.jwks_uri, type(exc).__name__)
            raise JWKSUnavailable("the JWKS could not be fetched") from exc
        try:
            document = json_input.loads(content)
        except ValueError as exc:
            raise JWKSUnavailable("the JWKS is not JSON") from exc
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise JWKSUnavailable("the JWKS has no keys array")
        keys = {}
        for entry in document["keys"]:
            parsed = _public_key(entry)
            if parsed is not None:
                keys[entry["kid"]] = parsed
        self._last_failed = False
        return _KeySet(keys=keys, fetched_at=self._clock())

    def _read_document(self, response: requests.Response, deadline_at: float) -> bytes:
        """The body, at most max_jwks_bytes (decoded), read before the deadline (read1: what
        has arrived, so the loop sees the clock even on a session without deadline pools)."""
        limit = self.max_jwks_bytes
        body = bytearray()
        while len(body) <= limit:
            if time.monotonic() >= deadline_at:
                log.error(
                    "JWKS fetch from %s took longer than %ss", self.jwks_uri, self.total_timeout
                )
                raise JWKSUnavailable("the JWKS endpoint answered too slowly")
            chunk = response.raw.read1(min(16 * 1024, limit + 1 - len(body)), decode_content=True)
            if not chunk:
                return bytes(body)
            body += chunk
        log.error("JWKS from %s is larger than %s bytes", self.jwks_uri, limit)
        raise JWKSUnavailable("the JWKS is too large")


def _public_key(entry: Any) -> tuple[str, Any] | None:
    """(alg, key) for a usable signing JWK; None (skipped) for anything else."""
    if not isinstance(entry, dict):
        return None
    kid, alg = entry.get("kid"), entry.get("alg")
    if not isinstance(kid, str) or not kid or alg not in ALLOWED_ALGS:
        return None  # without its own alg a key may verify nothing
    if entry.get("use", "sig") != "sig":
        return None
    key_class, curve = ALLOWED_ALGS[alg]
    try:
        key = import_key(entry)
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        log.warning("skipping JWKS key %s: %s", kid, type(exc).__name__)
        return None
    if not isinstance(key, key_class):
        return None
    if curve is not None and entry.get("crv") != curve:
        return None
    if isinstance(key, RSAKey) and key.raw_value.key_size < MIN_RSA_BITS:
        return None
    return alg, key
