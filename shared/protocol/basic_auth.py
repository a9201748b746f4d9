"""HTTP Basic credentials as RFC 6749 §2.3.1 uses them for client authentication."""

from __future__ import annotations

import base64
import binascii
from urllib.parse import quote, unquote

MAX_HEADER = 4096


def parse_basic_credentials(header: str | None) -> tuple[str | None, str | None]:
    """(client_id, client_secret) from `Authorization: Basic ...`, or (None, None).

    RFC 6749 §2.3.1: both are form-urlencoded before base64, so they are decoded here.
    Malformed input of any kind yields (None, None), never an exception.
    """
    if not header or len(header) > MAX_HEADER:
        return None, None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        return None, None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None, None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        return None, None
    return unquote(client_id), unquote(secret)


def basic_credentials_header(client_id: str, client_secret: str) -> str:
    raw = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}"
    return "Basic " + base64.b64encode(raw.encode()).decode()
