"""Small helpers the resource-server tests share."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import func, select

from resource_server.db import db
from resource_server.models import Note


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def note_count(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Note))


def add_note(app: Flask, owner_sub: str, body: str = "a note") -> int:
    with app.app_context():
        note = Note(owner_sub=owner_sub, body=body, created_at=1_700_000_000)
        db.session.add(note)
        db.session.commit()
        return note.id
