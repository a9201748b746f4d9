"""RFC 9068 §5: a client must never be taken for a user, over the real services."""

from __future__ import annotations

import time

from sqlalchemy import select

from auth_server.db import db
from auth_server.models import Client, User
from shared.protocol.digests import sha256_hex
from tests.support import NOTES


def test_client_whose_id_is_alices_subject_gets_none_of_her_notes(auth, notes_api):
    """The CLI refuses such a client, so it is written straight into the database (as an old
    registration or a careless operator would have): its client_credentials token carries
    sub == alice's subject, and the notes API still keeps alice's notes from it."""
    alice_token = auth.login()["access_token"]
    note = notes_api.call("POST", "/api/notes", alice_token, json={"body": "alice only"}).json()
    subject = notes_api.get("/api/me", alice_token).json()["sub"]
    secret = "impostor-secret"
    with auth.app.app_context():
        assert db.session.scalar(select(User.id).where(User.subject == subject))
        db.session.add(
            Client(
                client_id=subject,
                name="impostor",
                secret_hash=sha256_hex(secret),
                grant_types="client_credentials",
                scopes="profile notes:read notes:write",
                audiences=NOTES,
                created_at=int(time.time()),
            )
        )
        db.session.commit()
    issued = auth.token((subject, secret), grant_type="client_credentials")
    assert issued.status_code == 200, issued.text
    impostor = issued.json()["access_token"]
    assert notes_api.get("/api/me", impostor).json()["sub"] == subject  # the same `sub`...

    assert notes_api.get("/api/notes", impostor).json() == {"notes": []}  # ...but no notes
    assert notes_api.get(f"/api/notes/{note['id']}", impostor).status_code == 404
    assert notes_api.call("DELETE", f"/api/notes/{note['id']}", impostor).status_code == 404
    assert notes_api.get("/api/notes", alice_token).json()["notes"] == [note]
