"""OAuth syntax the authorization server, the resource-server guard and the client library agree
on, defined once: what a scope token is, the longest token value anyone accepts, and the headers
that keep token answers out of caches."""

from __future__ import annotations

import re

# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ). Use fullmatch.
SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")

# The longest token value (access token, refresh token, authorization code) accepted anywhere:
# far longer than anything Tessera issues, so a longer one is refused before it is parsed,
# hashed or looked up.
MAX_TOKEN_LENGTH = 8192

# RFC 6749 §5.1 and RFC 6750 §3: answers that carry tokens or token errors are not cached
# (Pragma for HTTP/1.0 caches). Copy it ({**NO_STORE}) rather than change it.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
