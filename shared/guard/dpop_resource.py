"""DPoP (RFC 9449 §7) at a resource server: what ``TokenGuard`` asks before and after it
introspects the token.

``proof_of`` runs before introspection: a request with the `DPoP` scheme must carry exactly one
proof for this method and URL (the external one: behind a proxy, Flask's URL already reflects
the trusted X-Forwarded-* headers), fresh, with `ath` of this very token; a bad one never costs
an introspection. ``confirm`` runs after it: a token bound to a key (`cnf.jkt`) is accepted only
with a proof of that key and never as a bearer token, and a DPoP request needs a bound token.
``first_use`` is last, so only a request that passed everything remembers its proof's jti.
Every failure is a 401 with a DPoP challenge: `invalid_dpop_proof` for the proof,
`invalid_token` for the token.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable

from flask import Request

from shared.guard.bearer import BEARER, DPOP, BearerError
from shared.guard.dpop_replay import SeenProofs
from shared.guard.introspection import IntrospectionResult
from shared.protocol.dpop import (
    DEFAULT_LEEWAY,
    DEFAULT_MAX_AGE,
    SUPPORTED_ALGS,
    DPoPProof,
    DPoPProofError,
    verify_proof,
)


class ResourceDPoP:
    algs = SUPPORTED_ALGS

    def __init__(
        self,
        seen: SeenProofs,
        max_age: int = DEFAULT_MAX_AGE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.seen = seen
        self.max_age = max_age
        self.clock = clock

    def proof_of(self, request: Request, scheme: str, token: str) -> DPoPProof | None:
        """The verified proof of a DPoP request; None for a bearer request."""
        if scheme == BEARER:
            return None
        values = request.headers.getlist("DPoP")
        if len(values) != 1:
            raise BearerError.invalid_dpop_proof("The request needs exactly one DPoP proof header")
        try:
            return verify_proof(
                values[0],
                method=request.method,
                url=request.base_url,
                now=self.clock(),
                max_age=self.max_age,
                access_token=token,
            )
        except DPoPProofError as error:
            raise BearerError.invalid_dpop_proof(error.description.rstrip(".")) from None

    def confirm(self, proof: DPoPProof | None, result: IntrospectionResult) -> None:
        """The token's binding matches how it was presented (RFC 9449 §7.1, §7.2)."""
        if proof is None:
            if result.cnf_jkt is not None:
                raise BearerError(
                    401,
                    "invalid_token",
                    "The access token is bound to a key: send it with the DPoP scheme and a proof",
                    scheme=DPOP,
                )
            return
        if result.cnf_jkt is None:
            raise BearerError(
                401, "invalid_token", "The access token is not bound to a DPoP key", scheme=DPOP
            )
        if not hmac.compare_digest(result.cnf_jkt.encode(), proof.jkt.encode()):
            raise BearerError.invalid_dpop_proof("The DPoP proof is signed by another key")

    def first_use(self, proof: DPoPProof | None) -> None:
        if proof is None:
            return
        now = int(self.clock())
        fresh_until = proof.iat + self.max_age + DEFAULT_LEEWAY
        if not self.seen.first_use(proof.replay_key, fresh_until, now):
            raise BearerError.invalid_dpop_proof("The DPoP proof was already used")
