"""Resource-server tables. Times are integer epoch seconds, as on the authorization server."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from resource_server.db import db

OWNER_SUB_LENGTH = 255
# Note.id is an Integer column: 32-bit signed on PostgreSQL, so a larger id in a URL would make
# the database raise (a 500) instead of simply finding nothing. Routes accept only 1..this.
MAX_NOTE_ID = 2**31 - 1


class Note(db.Model):
    __tablename__ = "notes"
    # SQLite would otherwise reuse the id of a deleted last row, and an old Location would
    # then name someone's new note.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # A user's subject (the token's `sub`), or `client:<client_id>` for a client-credentials
    # token (api._owner).
    owner_sub: Mapped[str] = mapped_column(String(OWNER_SUB_LENGTH), index=True)
    body: Mapped[str] = mapped_column(Text)
    # BigInteger: a 32-bit column would overflow in 2038.
    created_at: Mapped[int] = mapped_column(BigInteger)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "body": self.body, "created_at": self.created_at}


class DPoPProofSeen(db.Model):
    """A DPoP proof already used here (RFC 9449 §11.1): the digest of its key thumbprint and
    jti, kept until the proof is too old to be accepted anyway (shared/guard/dpop_replay.py)."""

    __tablename__ = "dpop_proofs_seen"

    proof_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)
