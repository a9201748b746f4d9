"""RFC 9449 DPoP proofs: checking one (§4.3), the key thumbprint (RFC 7638) and `ath` (§4.2).

No Flask here: the authorization server's token endpoint and the resource servers' guard both
call ``verify_proof`` with the method and URL of their request and get back the proof's facts
(above all ``jkt``, the SHA-256 thumbprint of its public key), or a ``DPoPProofError`` whose
description is a fixed sentence, safe for an ``error_description``. Whether the proof's ``jti``
was seen before is the caller's question (``shared/guard/dpop_replay.py``): it needs the service's
database, and is asked last, so a proof that fails any other check burns nothing.

Signatures are checked by joserfc with exactly the one algorithm the header names, and only
ES256, EdDSA or Ed25519 (an Ed25519 key) and RS256 (2048 bits or more) are accepted: never
`none`, never a MAC.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import json
import re
import secrets
import string
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwa import JWSAlgModel
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey, import_key
from joserfc.jws import JWSRegistry

from shared.protocol import json_input

PROOF_TYPE = "dpop+jwt"
# What the proof may be signed with, and the key type and curve each needs.
# Ed25519 is RFC 9864's fully-specified name for EdDSA with that curve, what current clients
# (oauth4webapi among them) sign with.
ALGORITHMS = {
    "ES256": (ECKey, "P-256"),
    "EdDSA": (OKPKey, "Ed25519"),
    "Ed25519": (OKPKey, "Ed25519"),
    "RS256": (RSAKey, None),
}
SUPPORTED_ALGS = tuple(ALGORITHMS)
MIN_RSA_BITS = 2048
MAX_PROOF_LENGTH = 8192
MAX_JTI_LENGTH = 256
# A proof is fresh for this long after its iat, and may be this far ahead of our clock.
DEFAULT_MAX_AGE = 60
DEFAULT_LEEWAY = 5
# JWK members that only a private (or symmetric) key has (RFC 7518 §6.2.2, §6.3.2, §6.4).
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_THUMBPRINT = 43  # base64url of 32 bytes, unpadded
_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 3986 §6.2.2.2: a percent-encoded unreserved character (§2.3) is the character itself;
# any other percent-encoding stays, with its hex digits in upper case (§6.2.2.1).
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")


def _quiet(alg: JWSAlgModel) -> JWSAlgModel:
    quiet = copy.copy(alg)
    quiet.security_warning = None  # joserfc flags EdDSA as superseded by Ed25519 (RFC 9864)
    return quiet


class _Registry(JWSRegistry):
    algorithms = {name: _quiet(JWSRegistry.algorithms[name]) for name in ALGORITHMS}
    recommended: list[str] = []
    # A 4096-bit RSA jwk does not fit joserfc's default of 512 bytes.
    max_header_length = 4096


# One per algorithm, each allowing only it; unknown header parameters are ignored (RFC 7515).
_REGISTRIES = {name: _Registry(algorithms=[name], strict_check_header=False) for name in ALGORITHMS}


class DPoPProofError(Exception):
    """The proof is not acceptable (RFC 9449 §7.1 / §5: `invalid_dpop_proof`)."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


@dataclass(frozen=True)
class DPoPProof:
    """A proof that passed every check but the replay check."""

    jkt: str
    jti: str
    iat: int
    nonce: str | None = None

    @property
    def replay_key(self) -> str:
        """What the replay store keeps: jtis are unique per key (§11.1), so two clients cannot
        collide, and a digest bounds the column."""
        return hashlib.sha256(f"{self.jkt}.{self.jti}".encode()).hexdigest()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(segment: str) -> bytes:
    if "=" in segment:
        raise ValueError("padded base64url")
    return base64.b64decode(segment + "=" * (-len(segment) % 4), altchars=b"-_", validate=True)


def access_token_hash(access_token: str) -> str:
    """RFC 9449 §4.2 `ath`: base64url of the SHA-256 of the token's ASCII value."""
    return b64url(hashlib.sha256(access_token.encode("ascii", "surrogateescape")).digest())


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint of a public JWK (what `cnf.jkt` and `dpop_jkt` carry)."""
    return import_key(jwk).thumbprint()


def is_thumbprint(value: Any) -> bool:
    """Whether ``value`` has the form of a SHA-256 JWK thumbprint (43 base64url characters)."""
    return isinstance(value, str) and len(value) == _THUMBPRINT and set(value) <= _B64URL


def normalize_htu(url: str) -> str:
    """The URI a proof's `htu` is compared on (§4.3 step 9): without query and fragment, with
    RFC 3986 §6.2.2 syntax-based and §6.2.3 scheme-based normalisation (case of scheme and
    host, default port, empty path, percent-encoding)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    netloc = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    path = _PERCENT.sub(_normalize_escape, parts.path) or "/"
    return urlunsplit((scheme, netloc, path, "", ""))


def _normalize_escape(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else "%" + match.group(1).upper()


def verify_proof(
    proof: str | None,
    *,
    method: str,
    url: str,
    now: float | None = None,
    max_age: int = DEFAULT_MAX_AGE,
    leeway: int = DEFAULT_LEEWAY,
    access_token: str | None = None,
) -> DPoPProof:
    """Check a DPoP header value against the request it came with (RFC 9449 §4.3).

    With ``access_token`` (at a resource server) the proof must carry its `ath`. Raises
    DPoPProofError; the replay check is left to the caller.
    """
    if not isinstance(proof, str) or not proof:
        raise DPoPProofError("The request has no DPoP proof.")
    if len(proof) > MAX_PROOF_LENGTH:
        raise DPoPProofError("The DPoP proof is too long.")
    header = _header(proof)
    alg = header["alg"]
    key = _public_key(header["jwk"], alg)
    try:
        signed = jws.deserialize_compact(proof, key, algorithms=[alg], registry=_REGISTRIES[alg])
    except (JoseError, ValueError, TypeError) as exc:
        raise DPoPProofError("The DPoP proof signature is invalid.") from exc
    try:
        claims = json_input.loads(signed.payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DPoPProofError("The DPoP proof claims are malformed.") from exc
    if not isinstance(claims, dict):
        raise DPoPProofError("The DPoP proof claims are malformed.")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_LENGTH:
        raise DPoPProofError("The DPoP proof has no valid jti.")
    if claims.get("htm") != method:
        raise DPoPProofError("The DPoP proof is for another HTTP method.")
    htu = claims.get("htu")
    if not isinstance(htu, str) or not _same_uri(htu, url):
        raise DPoPProofError("The DPoP proof is for another URL.")
    iat = claims.get("iat")
    if isinstance(iat, bool) or not isinstance(iat, int | float) or iat != iat:
        raise DPoPProofError("The DPoP proof has no valid iat.")
    current = time.time() if now is None else now
    if iat > current + leeway:
        raise DPoPProofError("The DPoP proof was issued in the future.")
    if iat < current - max_age - leeway:
        raise DPoPProofError("The DPoP proof is too old.")
    if access_token is not None:
        ath = claims.get("ath")
        if not isinstance(ath, str) or ath != access_token_hash(access_token):
            raise DPoPProofError("The DPoP proof is not for this access token (ath).")
    nonce = claims.get("nonce")
    if nonce is not None and not isinstance(nonce, str):
        raise DPoPProofError("The DPoP proof nonce is malformed.")
    return DPoPProof(jkt=key.thumbprint(), jti=jti, iat=int(iat), nonce=nonce)


def _header(proof: str) -> dict[str, Any]:
    parts = proof.split(".")
    if len(parts) != 3 or not all(parts):
        raise DPoPProofError("The DPoP proof is not a signed JWT.")
    try:
        header = json_input.loads(_b64decode(parts[0]))
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise DPoPProofError("The DPoP proof header is malformed.") from exc
    if not isinstance(header, dict):
        raise DPoPProofError("The DPoP proof header is malformed.")
    if header.get("typ") != PROOF_TYPE:
        raise DPoPProofError("The DPoP proof typ must be dpop+jwt.")
    if "crit" in header:
        raise DPoPProofError("The DPoP proof uses unsupported critical header parameters.")
    if header.get("alg") not in ALGORITHMS:
        raise DPoPProofError("The DPoP proof algorithm is not supported.")
    if not isinstance(header.get("jwk"), dict):
        raise DPoPProofError("The DPoP proof header has no jwk.")
    return header


def _public_key(jwk: dict[str, Any], alg: str) -> Key:
    if _PRIVATE_MEMBERS & jwk.keys():
        raise DPoPProofError("The DPoP proof jwk must be a public key.")
    key_class, curve = ALGORITHMS[alg]
    try:
        key = import_key(jwk)
    except (JoseError, ValueError, TypeError, KeyError, binascii.Error) as exc:
        raise DPoPProofError("The DPoP proof jwk is not a valid key.") from exc
    if not isinstance(key, key_class) or (curve is not None and jwk.get("crv") != curve):
        raise DPoPProofError("The DPoP proof jwk does not fit its algorithm.")
    if isinstance(key, RSAKey) and key.raw_value.key_size < MIN_RSA_BITS:
        raise DPoPProofError("The DPoP proof RSA key is too short.")
    return key


def _same_uri(htu: str, url: str) -> bool:
    try:
        return normalize_htu(htu) == normalize_htu(url)
    except ValueError:  # an invalid port or IPv6 literal
        return False


def create_proof(
    key: Key,
    method: str,
    url: str,
    *,
    access_token: str | None = None,
    nonce: str | None = None,
    now: float | None = None,
    alg: str | None = None,
) -> str:
    """A fresh proof signed with ``key`` (a joserfc private key), for clients and tests."""
    alg = alg or _alg_of(key)
    header = {"typ": PROOF_TYPE, "alg": alg, "jwk": key.as_dict(private=False)}
    claims: dict[str, Any] = {
        "jti": secrets.token_urlsafe(16),
        "htm": method,
        "htu": urlunsplit(urlsplit(url)._replace(query="", fragment="")),
        "iat": int(time.time() if now is None else now),
    }
    if access_token is not None:
        claims["ath"] = access_token_hash(access_token)
    if nonce is not None:
        claims["nonce"] = nonce
    payload = json.dumps(claims, separators=(",", ":")).encode()
    return jws.serialize_compact(header, payload, key, algorithms=[alg], registry=_REGISTRIES[alg])


def _alg_of(key: Key) -> str:
    if isinstance(key, ECKey):
        return "ES256"
    if isinstance(key, OKPKey):
        return "EdDSA"
    return "RS256"
