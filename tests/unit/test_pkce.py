"""PKCE (RFC 7636) with S256 only, as pure functions."""

from __future__ import annotations

import pytest

from auth_server.protocol import pkce

# RFC 7636 Appendix B
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_s256_matches_the_rfc_7636_appendix_b_example():
    assert pkce.s256(VERIFIER) == CHALLENGE


def test_the_right_verifier_verifies_and_any_other_does_not():
    assert pkce.verify(VERIFIER, CHALLENGE)
    assert not pkce.verify(VERIFIER[:-1] + "l", CHALLENGE)


@pytest.mark.parametrize(
    "verifier",
    [None, "", "a" * 42, "a" * 129, "a" * 42 + " ", "a" * 42 + "+", "ä" * 43],
)
def test_verifiers_outside_43_to_128_unreserved_characters_never_verify(verifier):
    challenge = pkce.s256(verifier) if verifier and verifier.isascii() else CHALLENGE
    assert not pkce.verify(verifier, challenge)


def test_128_character_verifiers_are_accepted():
    verifier = "~._-" * 32
    assert pkce.verify(verifier, pkce.s256(verifier))


@pytest.mark.parametrize(
    ("challenge", "valid"),
    [
        (CHALLENGE, True),
        (None, False),
        ("", False),
        (CHALLENGE[:-1], False),  # 42 characters
        (CHALLENGE + "A", False),
        (CHALLENGE[:-1] + "=", False),  # padding is not base64url without padding
        (VERIFIER[:43].replace("-", "+"), False),
    ],
)
def test_only_43_character_base64url_challenges_are_s256(challenge, valid):
    assert pkce.is_s256_challenge(challenge) is valid
