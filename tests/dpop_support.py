"""A DPoP client key for tests (RFC 9449): proofs made with the real signing code, and every
kind of broken proof a hostile client could send."""

from __future__ import annotations

import base64
import json
import secrets
import time

from joserfc import jws
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey

from shared.protocol.dpop import access_token_hash, create_proof


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


class DPoPKey:
    def __init__(self, kind: str = "ES256") -> None:
        self.alg = kind
        self.key = {
            "ES256": lambda: ECKey.generate_key("P-256"),
            "EdDSA": lambda: OKPKey.generate_key("Ed25519"),
            "Ed25519": lambda: OKPKey.generate_key("Ed25519"),
            "RS256": lambda: RSAKey.generate_key(2048),
        }[kind]()

    @property
    def jkt(self) -> str:
        return self.key.thumbprint()

    def proof(self, method: str, url: str, **kwargs) -> str:
        return create_proof(self.key, method, url, alg=self.alg, **kwargs)

    def signed(self, header: dict, claims: dict, key=None, alg: str | None = None) -> str:
        """A proof with exactly these header members and claims, signed by `key`."""
        alg = alg or header.get("alg", self.alg)
        key = key or self.key
        return jws.serialize_compact(header, json.dumps(claims).encode(), key, algorithms=[alg])

    def claims(self, method: str, url: str, **overrides) -> dict:
        claims = {"jti": secrets.token_urlsafe(12), "htm": method, "htu": url, "iat": time.time()}
        claims["iat"] = int(claims["iat"])
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def header(self, **overrides) -> dict:
        header = {"typ": "dpop+jwt", "alg": self.alg, "jwk": self.key.as_dict(private=False)}
        header.update(overrides)
        return {k: v for k, v in header.items() if v is not None}


def broken_proofs(key: DPoPKey, method: str, url: str, now: float) -> dict[str, str]:
    """Proofs that must each be refused with invalid_dpop_proof, by what is wrong with them."""
    other = DPoPKey()
    claims = key.claims(method, url, iat=int(now))
    unsigned = _b64({"typ": "dpop+jwt", "alg": "none", "jwk": key.header()["jwk"]})
    hmac_key = OctKey.generate_key(256)
    p384 = ECKey.generate_key("P-384")
    return {
        "not a jwt": "not-a-jwt",
        "garbage header": "e30.e30.e30",
        "alg none": f"{unsigned}.{_b64(claims)}.",
        "HS256": jws.serialize_compact(
            {"typ": "dpop+jwt", "alg": "HS256", "jwk": hmac_key.as_dict(private=False)},
            json.dumps(claims).encode(),
            hmac_key,
            algorithms=["HS256"],
        ),
        "unsupported alg ES384": key.signed(
            key.header(alg="ES384", jwk=p384.as_dict(private=False)), claims, key=p384
        ),
        "alg of another key type": key.signed(
            key.header(alg="EdDSA"), claims, key=OKPKey.generate_key("Ed25519")
        ),
        "wrong typ": key.signed(key.header(typ="JWT"), claims),
        "no jwk": key.signed(key.header(jwk=None), claims),
        "private key in jwk": key.signed(key.header(jwk=key.key.as_dict(private=True)), claims),
        "signed by another key": key.signed(key.header(), claims, key=other.key),
        "other method": key.signed(key.header(), key.claims("PUT", url, iat=int(now))),
        "other url": key.signed(
            key.header(), key.claims(method, "https://elsewhere.example/x", iat=int(now))
        ),
        "no jti": key.signed(key.header(), key.claims(method, url, iat=int(now), jti=None)),
        "stale iat": key.signed(key.header(), key.claims(method, url, iat=int(now) - 3600)),
        "future iat": key.signed(key.header(), key.claims(method, url, iat=int(now) + 3600)),
        "iat not a number": key.signed(key.header(), key.claims(method, url, iat="now")),
    }


def wrong_ath_proof(key: DPoPKey, method: str, url: str, now: float) -> str:
    return key.signed(
        key.header(), key.claims(method, url, iat=int(now), ath=access_token_hash("another"))
    )
