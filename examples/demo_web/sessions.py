"""Server-side sessions: the browser holds only an opaque random id; the tokens stay here.

Rows are keyed by the SHA-256 of the id, so a copy of the database opens no session. One
SQLite file, a short connection per operation: the demo serves one process (several threads).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from shared.client import Tokens
from shared.protocol.digests import sha256_hex

SESSION_ID_BYTES = 32
# An id a browser sends is at most this long; anything longer is not ours (and not hashed).
MAX_SESSION_ID_LENGTH = 128

_SCHEMA = """
CREATE TABLE IF NOT EXISTS web_session (
    id_hash TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    expires_at INTEGER NOT NULL
)
"""


class SessionStore:
    def __init__(self, path: str, ttl: int, clock: Callable[[], float] = time.time) -> None:
        self._path = path
        self._ttl = ttl
        self._clock = clock
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self._path, timeout=10)
        try:
            with conn:  # commits, or rolls back on an exception
                yield conn
        finally:
            conn.close()

    def create(self, data: dict[str, Any]) -> str:
        """A new session holding `data`; returns its id (for the cookie only)."""
        session_id = secrets.token_urlsafe(SESSION_ID_BYTES)
        now = int(self._clock())
        with self._connect() as conn:
            conn.execute("DELETE FROM web_session WHERE expires_at <= ?", (now,))
            conn.execute(
                "INSERT INTO web_session (id_hash, data, expires_at) VALUES (?, ?, ?)",
                (sha256_hex(session_id), json.dumps(data), now + self._ttl),
            )
        return session_id

    def load(self, session_id: str | None) -> dict[str, Any] | None:
        if not session_id or len(session_id) > MAX_SESSION_ID_LENGTH:
            return None
        now = int(self._clock())
        with self._connect() as conn:
            row = conn.execute(
                "SELECT data FROM web_session WHERE id_hash = ? AND expires_at > ?",
                (sha256_hex(session_id), now),
            ).fetchone()
            if row is None:
                return None
            # Sliding expiry: a session in use stays.
            conn.execute(
                "UPDATE web_session SET expires_at = ? WHERE id_hash = ?",
                (now + self._ttl, sha256_hex(session_id)),
            )
        return json.loads(row[0])

    def update(self, session_id: str, **changes: Any) -> None:
        """Set keys of a session's data (None removes one); a missing session stays missing."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute(
                "SELECT data FROM web_session WHERE id_hash = ?", (sha256_hex(session_id),)
            ).fetchone()
            if row is None:
                return
            data = json.loads(row[0])
            for key, value in changes.items():
                if value is None:
                    data.pop(key, None)
                else:
                    data[key] = value
            conn.execute(
                "UPDATE web_session SET data = ? WHERE id_hash = ?",
                (json.dumps(data), sha256_hex(session_id)),
            )

    def delete(self, session_id: str) -> None:
        with self._connect() as conn:
            conn.execute("DELETE FROM web_session WHERE id_hash = ?", (sha256_hex(session_id),))

    def count(self) -> int:
        with self._connect() as conn:
            return conn.execute("SELECT COUNT(*) FROM web_session").fetchone()[0]


class SessionTokens:
    """One session's tokens as shared/client/oauth.py's TokenStore: what the OAuthClient rotates."""

    def __init__(self, store: SessionStore, session_id: str) -> None:
        self._store = store
        self._session_id = session_id

    def load(self) -> Tokens | None:
        data = self._store.load(self._session_id)
        tokens = (data or {}).get("tokens")
        return Tokens.from_dict(tokens) if tokens else None

    def save(self, tokens: Tokens) -> None:
        self._store.update(self._session_id, tokens=tokens.to_dict())

    def clear(self) -> None:
        self._store.update(self._session_id, tokens=None)
