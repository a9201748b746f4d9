"""The client's side of DPoP (RFC 9449): a key, proofs made with it, and the nonces servers ask
for (§8, §9), kept per origin.

    key = DPoPKey.generate()            # ES256 (P-256)
    proof = key.proof("POST", "https://auth.example/oauth/token", nonce=None)

``DPoPKey.to_json`` holds the private key: keep it only where a token would be kept
(``KeyringTokenStore`` saves it next to the tokens).
"""

from __future__ import annotations

import json
import threading
from typing import Any
from urllib.parse import urlsplit

from joserfc.jwk import ECKey, Key, import_key

from shared.protocol.dpop import create_proof


class DPoPKey:
    def __init__(self, key: Key) -> None:
        self._key = key

    @classmethod
    def generate(cls) -> DPoPKey:
        return cls(ECKey.generate_key("P-256"))

    @classmethod
    def from_json(cls, text: str) -> DPoPKey:
        return cls(import_key(json.loads(text)))

    def to_json(self) -> str:
        return json.dumps(self._key.as_dict(private=True))

    @property
    def jkt(self) -> str:
        """RFC 7638 thumbprint: the `dpop_jkt` of an authorization request, the `cnf.jkt`."""
        return self._key.thumbprint()

    def proof(
        self,
        method: str,
        url: str,
        *,
        access_token: str | None = None,
        nonce: str | None = None,
    ) -> str:
        return create_proof(self._key, method, url, access_token=access_token, nonce=nonce)

    def __repr__(self) -> str:
        return f"DPoPKey(jkt={self.jkt!r})"


class NonceBook:
    """The latest `DPoP-Nonce` each origin sent (thread-safe)."""

    def __init__(self) -> None:
        self._nonces: dict[str, str] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _origin(url: str) -> str:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}".lower()

    def get(self, url: str) -> str | None:
        with self._lock:
            return self._nonces.get(self._origin(url))

    def remember(self, url: str, headers: Any) -> bool:
        """Keep the response's DPoP-Nonce; True if it is new for this origin."""
        nonce: str | None = headers.get("DPoP-Nonce")
        if not nonce:
            return False
        with self._lock:
            changed = self._nonces.get(self._origin(url)) != nonce
            self._nonces[self._origin(url)] = nonce
            return changed
