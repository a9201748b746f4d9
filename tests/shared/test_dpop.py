"""shared/protocol/dpop.py on its own: the RFC 9449 examples, URL comparison, the freshness
window."""

from __future__ import annotations

import pytest

from shared.protocol.dpop import (
    DPoPProofError,
    access_token_hash,
    is_thumbprint,
    jwk_thumbprint,
    normalize_htu,
    verify_proof,
)
from tests.dpop_support import DPoPKey

# RFC 9449 §4.2 / §6.1 examples: the proof key of Figure 3 and its thumbprint, an access token
# and its `ath`.
RFC_JWK = {
    "kty": "EC",
    "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
    "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA",
    "crv": "P-256",
}
RFC_JKT = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
RFC_TOKEN = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
RFC_ATH = "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"


def test_thumbprint_and_ath_match_the_rfc_examples():
    assert jwk_thumbprint(RFC_JWK) == RFC_JKT
    assert is_thumbprint(RFC_JKT) and not is_thumbprint(RFC_JKT[:-1]) and not is_thumbprint(7)
    assert access_token_hash(RFC_TOKEN) == RFC_ATH


@pytest.mark.parametrize(
    ("htu", "url"),
    [
        ("https://server.example.com/token", "https://server.example.com/token?x=1#f"),
        ("HTTPS://Server.Example.COM:443/token", "https://server.example.com/token"),
        ("http://server.example.com:80", "http://server.example.com/"),
        ("https://server.example.com/a%7Eb", "https://server.example.com/a~b"),
        ("https://server.example.com/a%2fb", "https://server.example.com/a%2Fb"),
    ],
)
def test_htu_is_compared_without_query_and_fragment_after_normalisation(htu, url):
    assert normalize_htu(htu) == normalize_htu(url)


@pytest.mark.parametrize(
    ("htu", "url"),
    [
        ("https://server.example.com/token", "http://server.example.com/token"),
        ("https://server.example.com:8443/token", "https://server.example.com/token"),
        ("https://server.example.com/token/", "https://server.example.com/token"),
        ("https://server.example.com/a%2Fb", "https://server.example.com/a/b"),
        ("https://other.example.com/token", "https://server.example.com/token"),
    ],
)
def test_htu_of_another_resource_differs(htu, url):
    assert normalize_htu(htu) != normalize_htu(url)


def test_proof_is_fresh_within_the_window_and_refused_outside_it():
    key = DPoPKey()
    url = "https://server.example.com/token"
    proof = key.proof("POST", url, now=1_000_000)
    for now in (1_000_000 - 5, 1_000_000 + 65):
        assert verify_proof(proof, method="POST", url=url, now=now, max_age=60).jkt == key.jkt
    for now in (1_000_000 - 6, 1_000_000 + 66):
        with pytest.raises(DPoPProofError):
            verify_proof(proof, method="POST", url=url, now=now, max_age=60)


def test_a_malformed_htu_is_a_refused_proof_not_an_exception():
    key = DPoPKey()
    claims = key.claims("POST", "https://server.example.com:99999/token")
    with pytest.raises(DPoPProofError, match="another URL"):
        verify_proof(
            key.signed(key.header(), claims),
            method="POST",
            url="https://server.example.com/token",
        )
