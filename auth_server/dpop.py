"""DPoP (RFC 9449) at the token endpoint: which key, if any, the request proves.

``TokenEndpointDPoP.check`` takes the request's DPoP header values, its method and its public
URL (the issuer's, whatever hop it came through) and returns the verified proof, or None when
the request has no proof (a bearer token request, as before). A proof that fails is
`invalid_dpop_proof`; with nonces on, one without the current nonce is `use_dpop_nonce` with a
`DPoP-Nonce` header (§8). The replay check runs last, so a bad proof burns nothing.

Nonces are stateless: an HMAC of the current time window under the server's session secret,
so every worker and replica makes and accepts the same ones; the previous window's stays
valid, so a nonce lives between one and two windows.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from auth_server.protocol.errors import InvalidDPoPProofError, UseDPoPNonceError
from shared.guard.dpop_replay import SeenProofs
from shared.protocol.dpop import DEFAULT_LEEWAY, DPoPProof, DPoPProofError, b64url, verify_proof

NONCE_WINDOW = 300


class DPoPNonces:
    def __init__(self, secret: str, window: int = NONCE_WINDOW) -> None:
        self._key = hashlib.sha256(b"tessera dpop nonce v1" + secret.encode()).digest()
        self._window = window

    def _for(self, slot: int) -> str:
        return b64url(hmac.new(self._key, str(slot).encode(), hashlib.sha256).digest()[:18])

    def current(self, now: int) -> str:
        return self._for(now // self._window)

    def valid(self, nonce: str | None, now: int) -> bool:
        if not nonce:
            return False
        slot = now // self._window
        return any(hmac.compare_digest(nonce, self._for(s)) for s in (slot, slot - 1))


class TokenEndpointDPoP:
    def __init__(self, seen: SeenProofs, max_age: int, nonces: DPoPNonces | None = None) -> None:
        self.seen = seen
        self.max_age = max_age
        self.nonces = nonces

    def check(self, values: Sequence[str], method: str, url: str, now: int) -> DPoPProof | None:
        if not values:
            return None
        if len(values) > 1:
            # RFC 9449 §4.3 step 1: exactly one DPoP header.
            raise InvalidDPoPProofError("The request has more than one DPoP header.")
        try:
            proof = verify_proof(values[0], method=method, url=url, now=now, max_age=self.max_age)
        except DPoPProofError as error:
            raise InvalidDPoPProofError(error.description) from None
        if self.nonces is not None and not self.nonces.valid(proof.nonce, now):
            raise UseDPoPNonceError(
                self.nonces.current(now), "The DPoP proof must carry the server's nonce."
            )
        fresh_until = proof.iat + self.max_age + DEFAULT_LEEWAY
        if not self.seen.first_use(proof.replay_key, fresh_until, now):
            raise InvalidDPoPProofError("The DPoP proof was already used.")
        return proof

    def nonce_header(self, now: int) -> dict[str, str]:
        """The DPoP-Nonce header every token response carries when nonces are on (§8.2)."""
        return {} if self.nonces is None else {"DPoP-Nonce": self.nonces.current(now)}
