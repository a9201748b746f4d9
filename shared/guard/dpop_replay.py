"""Which DPoP proofs were already used (RFC 9449 §11.1), in the service's own database.

A proof's `jti` may be used once while the proof is fresh. Every worker and replica of a
service shares its database, so the database decides: one ``INSERT ... ON CONFLICT DO NOTHING
RETURNING`` on a unique key per proof, in its own short transaction; a row comes back only to
the one request whose insert added it, which is the first use. Rows carry the time their proof
stops being fresh; past it the proof is refused by its `iat` anyway, so they are pruned, at
most once a minute per process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from sqlalchemy import Engine, Table, delete
from sqlalchemy.dialects import postgresql, sqlite

PRUNE_INTERVAL = 60
_DIALECTS = {"sqlite": sqlite, "postgresql": postgresql}


class SeenProofs:
    """``first_use(key, fresh_until, now)``: True once per key, across processes."""

    def __init__(self, engine: Callable[[], Engine], table: Table) -> None:
        # A callable: Flask-SQLAlchemy's engine exists only inside an app context.
        self._engine = engine
        self._table = table
        self._next_prune = 0
        self._lock = threading.Lock()

    def first_use(self, key: str, fresh_until: int, now: int) -> bool:
        engine = self._engine()
        insert = _DIALECTS[engine.dialect.name].insert
        statement = (
            insert(self._table)
            .values(proof_hash=key, expires_at=fresh_until)
            .on_conflict_do_nothing(index_elements=["proof_hash"])
            # RETURNING, not rowcount: psycopg reports no rowcount for this statement.
            .returning(self._table.c.proof_hash)
        )
        with engine.begin() as connection:
            added = connection.execute(statement).first() is not None
        self._prune(engine, now)
        return added

    def _prune(self, engine: Engine, now: int) -> None:
        with self._lock:
            if now < self._next_prune:
                return
            self._next_prune = now + PRUNE_INTERVAL
        with engine.begin() as connection:
            connection.execute(delete(self._table).where(self._table.c.expires_at < now))
