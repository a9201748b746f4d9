"""How secrets are stored and named: SHA-256 digests, and short fingerprints for logs."""

from __future__ import annotations

import hashlib
import hmac


def sha256_hex(value: str) -> str:
    # surrogateescape: a garbage token with undecodable bytes still hashes (and matches nothing)
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()


def fingerprint(value: str) -> str:
    """Eight hex characters: enough to correlate log lines, useless to an attacker."""
    return sha256_hex(value)[:8]


def matches_digest(value: str, digest: str) -> bool:
    """Constant-time comparison of a presented secret with its stored digest."""
    return hmac.compare_digest(sha256_hex(value), digest)
