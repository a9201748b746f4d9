"""Access tokens are signed without joserfc's per-call machinery (tokens.sign_jwt: the JOSE
header encoded once per key) and come out as joserfc's jwt.encode made them: the same header
and payload bytes, the same signature where the algorithm is deterministic, a signature
joserfc verifies where it is not (ES256)."""

from __future__ import annotations

import pytest
from joserfc import jwk, jwt

from auth_server.keys import KEY_TYPES, Signer
from auth_server.tokens import sign_jwt

CLAIMS = [
    {
        "iss": "https://as.example",
        "sub": "service-app",
        "aud": "urn:tessera:notes",
        "client_id": "service-app",
        "scope": "notes:read notes:write",
        "iat": 1700000000,
        "exp": 1700000900,
        "jti": "abcdefghijklmnopqrstuvwx",
    },
    {
        "iss": "https://as.example",
        "sub": "3f0c2a1e-0000-4000-8000-000000000000",
        "aud": ["urn:tessera:notes", "urn:tessera:reports"],
        "client_id": "web-app",
        "scope": "",
        "iat": 1,
        "exp": 2,
        "jti": "x",
        "cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"},
        "note": 'é \u2028 "quoted" </script>',
    },
]


@pytest.mark.parametrize("alg", sorted(KEY_TYPES))
@pytest.mark.parametrize("claims", CLAIMS)
def test_signed_as_joserfc_signs(alg, claims):
    kty, crv_or_size = KEY_TYPES[alg]
    key = jwk.generate_key(kty, crv_or_size, private=True)
    signer = Signer(key.thumbprint(), alg, key)
    header = {"alg": alg, "typ": "at+jwt", "kid": signer.kid}
    ours = sign_jwt(signer, dict(claims))
    theirs = jwt.encode(header, dict(claims), key, algorithms=[alg])
    assert ours.split(".")[:2] == theirs.split(".")[:2]
    if alg != "ES256":  # RSASSA-PKCS1-v1_5 and Ed25519 are deterministic
        assert ours == theirs
    token = jwt.decode(ours, key, algorithms=[alg])
    assert token.header == {"typ": "at+jwt", "alg": alg, "kid": signer.kid}
    assert token.claims == claims
    # the cached header of a second token of the same key is the same
    assert sign_jwt(signer, dict(claims)).split(".")[0] == ours.split(".")[0]
