"""The notes API: each caller (the token's `sub`) sees and changes only its own notes."""

from __future__ import annotations

import time
from typing import Any, NoReturn

from flask import Blueprint, Response, abort, current_app, jsonify, request, url_for
from flask.blueprints import BlueprintSetupState
from sqlalchemy import delete, select
from werkzeug.routing import BaseConverter

from resource_server.db import db
from resource_server.models import MAX_NOTE_ID, OWNER_SUB_LENGTH, Note
from shared.guard.bearer import BearerError
from shared.guard.protect import EXTENSION_KEY, current_token, require_token
from shared.protocol import json_input
from shared.service.database import affected_rows

MAX_NOTE_LENGTH = 10_000
# Owner of the notes of a token without a resource owner; user subjects are UUIDs, never this.
CLIENT_OWNER_PREFIX = "client:"

bp = Blueprint("api", __name__, url_prefix="/api")


class NoteIdConverter(BaseConverter):
    """A note id in a URL: 1 to 10 ASCII digits (not any Unicode digit), so int() always
    succeeds; a longer one matches no route (404). The views check the range (`_note_id`):
    refusing a value here would make werkzeug answer a DELETE with 405, since the GET rule
    matched the path."""

    regex = r"[0-9]{1,10}"
    weight = 50

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(int(value))


@bp.record_once
def _register_converter(state: BlueprintSetupState) -> None:
    # Recorded before the routes below, so it is in place when their rules are compiled.
    state.app.url_map.converters["note_id"] = NoteIdConverter


@bp.get("/me")
@require_token("profile")
def me() -> Response:
    token = current_token()
    return jsonify(
        sub=token.sub,
        username=token.username,
        client_id=token.client_id,
        scope=" ".join(token.scope),
        aud=list(token.aud),
    )


@bp.get("/notes")
@require_token("notes:read")
def list_notes() -> Response:
    notes = db.session.scalars(
        select(Note).where(Note.owner_sub == _owner()).order_by(Note.id)
    ).all()
    return jsonify(notes=[note.to_json() for note in notes])


@bp.get("/notes/<note_id:note_id>")
@require_token("notes:read")
def get_note(note_id: int) -> Response:
    return jsonify(_own_note(note_id).to_json())


@bp.post("/notes")
@require_token("notes:write")
def create_note() -> tuple[Response, int, dict[str, str]]:
    body = _note_body()
    note = Note(owner_sub=_owner(), body=body, created_at=int(time.time()))
    db.session.add(note)
    db.session.commit()
    location = url_for("api.get_note", note_id=note.id)
    return jsonify(note.to_json()), 201, {"Location": location}


@bp.delete("/notes/<note_id:note_id>")
@require_token("notes:write")
def delete_note(note_id: int) -> tuple[str, int]:
    deleted = affected_rows(
        db.session.execute(
            delete(Note).where(Note.id == _note_id(note_id), Note.owner_sub == _owner())
        )
    )
    db.session.commit()
    if not deleted:
        _not_found()
    return "", 204


def _owner() -> str:
    """Whose notes these are: the user's subject for a user's token; for a token with no
    resource owner (client_credentials) `client:<client_id>`, a namespace no user subject can
    enter, so a client whose id equals a user's subject still never sees that user's notes
    (RFC 9068 §5). A resource owner shows as RFC 7662 `username`; a token whose `sub` is its
    own client_id is the client's, whatever else it says."""
    token = current_token()
    if token.username and token.sub != token.client_id:
        owner = token.sub or ""
    else:
        owner = CLIENT_OWNER_PREFIX + token.client_id if token.client_id else ""
    if not owner or len(owner) > OWNER_SUB_LENGTH:
        # The authorization server always says who the token is for; else nothing is.
        guard = current_app.extensions[EXTENSION_KEY]
        abort(guard.challenge(BearerError.invalid_token("The access token has no usable subject")))
    return owner


def _note_id(note_id: int) -> int:
    # An id the column cannot hold (0, or past 2**31 - 1) names no note: a 404 like any other
    # missing note, where the database would fail on it (integer out of range on PostgreSQL).
    if not 1 <= note_id <= MAX_NOTE_ID:
        _not_found()
    return note_id


def _own_note(note_id: int) -> Note:
    note = db.session.scalar(
        select(Note).where(Note.id == _note_id(note_id), Note.owner_sub == _owner())
    )
    if note is None:
        _not_found()
    return note


def _not_found() -> NoReturn:
    # The same answer for a missing note and someone else's, so ids reveal nothing.
    abort(404, description="No such note")


def _note_body() -> str:
    if not request.is_json:
        abort(415, description="Send the note as application/json")
    try:
        # json_input: nesting too deep for json.loads is a ValueError too, not a 500.
        payload: Any = json_input.loads(request.get_data(cache=False))
    except ValueError:
        abort(400, description="The request body is not valid JSON")
    if not isinstance(payload, dict):
        abort(400, description="The request body must be a JSON object")
    body = payload.get("body")
    if not isinstance(body, str):
        abort(400, description="'body' must be a string")
    if not 1 <= len(body) <= MAX_NOTE_LENGTH:
        abort(400, description=f"'body' must have 1 to {MAX_NOTE_LENGTH} characters")
    # PostgreSQL text cannot hold NUL, and lone surrogates (valid in JSON escapes) are not
    # UTF-8: reject both here rather than fail in the database.
    if "\x00" in body or not _encodes_as_utf8(body):
        abort(400, description="'body' has characters that cannot be stored")
    return body


def _encodes_as_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
