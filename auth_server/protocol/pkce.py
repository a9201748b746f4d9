"""PKCE (RFC 7636) with the S256 method only: `plain` is refused everywhere (RFC 9700 §2.1.1)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

# RFC 7636 §4.1: code-verifier = 43*128unreserved
CODE_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
# §4.2: BASE64URL(SHA256(verifier)) without padding is always 43 characters.
S256_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")


def s256(code_verifier: str) -> str:
    digest = hashlib.sha256(code_verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def is_s256_challenge(code_challenge: str | None) -> bool:
    return bool(code_challenge) and S256_CHALLENGE.fullmatch(code_challenge or "") is not None


def verify(code_verifier: str | None, code_challenge: str) -> bool:
    """RFC 7636 §4.6, compared in constant time."""
    if not code_verifier or CODE_VERIFIER.fullmatch(code_verifier) is None:
        return False
    return hmac.compare_digest(s256(code_verifier), code_challenge)
