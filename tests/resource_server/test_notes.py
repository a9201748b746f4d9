"""The notes API: ownership by token `sub`, input validation and JSON answers.

A stand-in introspection endpoint (fake_as.py) issues the tokens here because these tests
exercise the resource server alone, with tokens of exactly the scope, subject and audience
each case needs, which the real AS cannot be made to mint on demand. The real end-to-end tests
live in tests/end_to_end/.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.resource_server.helpers import add_note, bearer, note_count
from tests.support import post_chunked

WRITE = "notes:read notes:write"


@pytest.fixture
def alice(fake_as) -> dict[str, str]:
    return bearer(fake_as.issue(WRITE))


@pytest.fixture
def bob(fake_as) -> dict[str, str]:
    return bearer(fake_as.issue(WRITE, sub="bob-subject", username="bob"))


def test_me_returns_identity_from_introspection(client, fake_as):
    """/api/me answers sub, username, client_id, scope and aud of the token."""
    token = fake_as.issue("profile notes:read", aud=["urn:tessera:notes", "urn:x"])
    response = client.get("/api/me", headers=bearer(token))
    assert response.status_code == 200
    assert response.json == {
        "sub": "alice-subject",
        "username": "alice",
        "client_id": "notes-web",
        "scope": "profile notes:read",
        "aud": ["urn:tessera:notes", "urn:x"],
    }


def test_me_requires_profile_scope(client, fake_as):
    """/api/me without `profile` is 403 insufficient_scope."""
    response = client.get("/api/me", headers=bearer(fake_as.issue("notes:read")))
    assert response.status_code == 403
    assert 'scope="profile"' in response.headers["WWW-Authenticate"]


def test_list_notes_returns_only_callers_notes(app, client, alice):
    """Only notes whose owner is the token's sub are listed, oldest first."""
    first = add_note(app, "alice-subject", "one")
    add_note(app, "bob-subject", "bob's")
    second = add_note(app, "alice-subject", "two")
    response = client.get("/api/notes", headers=alice)
    assert response.status_code == 200
    assert [(n["id"], n["body"]) for n in response.json["notes"]] == [
        (first, "one"),
        (second, "two"),
    ]
    assert set(response.json["notes"][0]) == {"id", "body", "created_at"}


def test_list_notes_is_empty_for_new_caller(client, bob):
    """A caller without notes gets an empty list."""
    assert client.get("/api/notes", headers=bob).json == {"notes": []}


def test_create_note_returns_201_with_note_and_location(app, client, alice):
    """POST stores the note for the caller and answers 201, the note and its Location."""
    before = int(time.time())
    response = client.post("/api/notes", json={"body": "hello"}, headers=alice)
    assert response.status_code == 201
    note = response.json
    assert note["body"] == "hello"
    assert before <= note["created_at"] <= int(time.time())
    assert response.headers["Location"] == f"/api/notes/{note['id']}"
    listed = client.get("/api/notes", headers=alice).json["notes"]
    assert listed == [note]


def test_created_note_location_resolves_for_owner(client, alice):
    """The Location of a new note answers that note to its owner."""
    created = client.post("/api/notes", json={"body": "x"}, headers=alice)
    response = client.get(created.headers["Location"], headers=alice)
    assert response.status_code == 200
    assert response.json == created.json


def test_note_body_of_10000_characters_is_accepted(client, alice):
    """The longest allowed body (10000 characters, not bytes) is stored."""
    response = client.post("/api/notes", json={"body": "é" * 10_000}, headers=alice)
    assert response.status_code == 201


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_create_note_with_wrong_content_type_is_415(app, client, alice, content_type):
    """Only JSON is accepted: 415 JSON error, nothing stored."""
    headers = dict(alice)
    if content_type:
        headers["Content-Type"] = content_type
    response = client.post("/api/notes", data='{"body": "x"}', headers=headers)
    assert response.status_code == 415
    assert response.json["error"] == "unsupported_media_type"
    assert note_count(app) == 0


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b"",
        b"\xff\xfe{}",
        b"[" * 5000 + b"]" * 5000,
        b'"just a string"',
        b"null",
        b"[]",
        b"{}",
        b'{"text": "x"}',
        b'{"body": 5}',
        b'{"body": null}',
        b'{"body": ["x"]}',
        b'{"body": ""}',
        b'{"body": "nul \\u0000 inside"}',
        b'{"body": "lone \\ud800 surrogate"}',
    ],
)
def test_create_note_with_malformed_or_invalid_body_is_400(app, client, alice, raw):
    """Malformed JSON, a non-object, or a missing/empty/non-string body: 400, nothing stored."""
    response = client.post(
        "/api/notes", data=raw, headers={**alice, "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"
    assert response.json["error_description"]
    assert note_count(app) == 0


def test_create_note_with_too_long_body_is_400(app, client, alice):
    """10001 characters is one too many: 400, nothing stored."""
    response = client.post("/api/notes", json={"body": "x" * 10_001}, headers=alice)
    assert response.status_code == 400
    assert "10000" in response.json["error_description"]
    assert note_count(app) == 0


def test_oversized_request_body_is_413(make_app, make_settings, fake_as):
    """A body over MAX_REQUEST_BYTES is 413 JSON, nothing stored."""
    app = make_app(make_settings(max_request_bytes=1024))
    token = fake_as.issue(WRITE)
    response = app.test_client().post(
        "/api/notes", json={"body": "x" * 2000}, headers=bearer(token)
    )
    assert response.status_code == 413
    assert response.json["error"] == "request_too_large"
    assert note_count(app) == 0


def test_delete_own_note_is_204(app, client, alice):
    """DELETE of the caller's note: 204 with no body, and it is gone."""
    note_id = add_note(app, "alice-subject")
    response = client.delete(f"/api/notes/{note_id}", headers=alice)
    assert response.status_code == 204
    assert response.data == b""
    assert note_count(app) == 0
    assert client.delete(f"/api/notes/{note_id}", headers=alice).status_code == 404


def test_note_of_other_user_is_404(app, client, alice, bob):
    """Someone else's note is 404 to read or delete, exactly like a missing one, and stays."""
    note_id = add_note(app, "alice-subject", "private")
    foreign_delete = client.delete(f"/api/notes/{note_id}", headers=bob)
    missing_delete = client.delete("/api/notes/999999", headers=bob)
    foreign_get = client.get(f"/api/notes/{note_id}", headers=bob)
    missing_get = client.get("/api/notes/999999", headers=bob)
    assert foreign_delete.status_code == missing_delete.status_code == 404
    assert foreign_delete.json == missing_delete.json
    assert foreign_get.status_code == missing_get.status_code == 404
    assert foreign_get.json == missing_get.json
    assert note_count(app) == 1
    assert client.get("/api/notes", headers=bob).json == {"notes": []}


def test_client_credentials_token_owns_its_own_notes(app, client, fake_as):
    """A client-credentials token (sub = client_id, no username) creates and lists its notes."""
    token = fake_as.issue(WRITE, sub="batch-job", client_id="batch-job", username=None)
    created = client.post("/api/notes", json={"body": "from a job"}, headers=bearer(token))
    assert created.status_code == 201
    assert client.get("/api/notes", headers=bearer(token)).json == {"notes": [created.json]}
    alice = bearer(fake_as.issue(WRITE))
    assert client.get("/api/notes", headers=alice).json == {"notes": []}


def test_client_token_whose_client_id_is_a_users_subject_never_sees_that_users_notes(
    app, client, fake_as
):
    """RFC 9068 §5: a client registered with id == alice's subject holds tokens with
    sub == alice's subject. Without a resource owner (no `username`) its notes are its own:
    alice's are not listed, readable nor deletable, and its notes are not alice's."""
    note_id = add_note(app, "alice-subject", "alice's secret")
    impostor = bearer(
        fake_as.issue(WRITE, sub="alice-subject", client_id="alice-subject", username=None)
    )
    assert client.get("/api/notes", headers=impostor).json == {"notes": []}
    assert client.get(f"/api/notes/{note_id}", headers=impostor).status_code == 404
    assert client.delete(f"/api/notes/{note_id}", headers=impostor).status_code == 404
    created = client.post("/api/notes", json={"body": "mine"}, headers=impostor).json
    alice = bearer(fake_as.issue(WRITE))
    listed = client.get("/api/notes", headers=alice).json["notes"]
    assert [n["id"] for n in listed] == [note_id] and created["id"] != note_id
    # sub == client_id marks the client's own token even if a username came along
    odd = bearer(fake_as.issue(WRITE, sub="alice-subject", client_id="alice-subject"))
    assert client.get("/api/notes", headers=odd).json == {"notes": [created]}


def test_deleted_note_id_is_not_reused(app, client, alice):
    """A new note never takes the id of a deleted one (an old Location must not find it)."""
    first = client.post("/api/notes", json={"body": "a"}, headers=alice).json["id"]
    client.delete(f"/api/notes/{first}", headers=alice)
    second = client.post("/api/notes", json={"body": "b"}, headers=alice).json["id"]
    assert second != first


def test_non_integer_note_id_is_404(client, alice):
    """/api/notes/<not an int> is a JSON 404."""
    response = client.delete("/api/notes/abc", headers=alice)
    assert response.status_code == 404
    assert response.json["error"] == "not_found"


@pytest.mark.parametrize(
    "note_id",
    ["0", "2147483648", "9223372036854775808", "99999999999999999999999", "9" * 5000, "١٢"],
)
@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_note_id_outside_the_column_range_is_404(app, client, alice, method, note_id):
    """Ids no note can have (past the 32-bit id column of PostgreSQL, past SQLite's 64 bits,
    more digits than int() parses) are a JSON 404 like a missing note, never a database error."""
    add_note(app, "alice-subject")
    response = client.open(f"/api/notes/{note_id}", method=method, headers=alice)
    assert response.status_code == 404
    assert response.json["error"] == "not_found"
    assert note_count(app) == 1


def test_largest_note_id_is_looked_up(client, alice):
    """2**31 - 1, the last id the column holds, is still a (missing) note, not a routing miss."""
    response = client.get("/api/notes/2147483647", headers=alice)
    assert response.status_code == 404
    assert response.json["error_description"] == "No such note"


def test_every_api_answer_forbids_caching(app, client, fake_as, alice):
    """Cache-Control: no-store on every /api answer with user data, successes and errors alike."""
    note_id = add_note(app, "alice-subject")
    me = bearer(fake_as.issue("profile"))
    responses = [
        client.get("/api/me", headers=me),
        client.get("/api/notes", headers=alice),
        client.get(f"/api/notes/{note_id}", headers=alice),
        client.post("/api/notes", json={"body": "new"}, headers=alice),
        client.delete(f"/api/notes/{note_id}", headers=alice),
        client.get(f"/api/notes/{note_id}", headers=alice),
        client.post("/api/notes", data="x", headers=alice),
        client.put("/api/notes", headers=alice),
        client.get("/api/notes"),
        client.get("/api/me", headers=alice),
        client.get("/api/nothing-here"),
    ]
    assert [r.status_code for r in responses] == [
        200,
        200,
        200,
        201,
        204,
        404,
        415,
        405,
        401,
        403,
        404,
    ]
    for response in responses:
        assert response.headers["Cache-Control"] == "no-store", response.status_code


def test_chunked_body_over_the_limit_is_413_not_cut(make_app, make_settings, fake_as, serve):
    """A chunked body (no Content-Length) over MAX_REQUEST_BYTES is 413 JSON with no-store, as
    with Content-Length; Werkzeug alone would read the first 1024 bytes and drop the rest."""
    app = make_app(make_settings(max_request_bytes=1024))
    server = serve(app)
    headers = {**bearer(fake_as.issue(WRITE)), "Content-Type": "application/json"}
    oversized = json.dumps({"body": "x" * 1100}).encode()
    response = post_chunked(server.url, "/api/notes", oversized, headers)
    assert response.status == 413
    assert response.headers["cache-control"] == "no-store"
    assert json.loads(response.body)["error"] == "request_too_large"
    assert note_count(app) == 0


def test_chunked_body_within_the_limit_is_read_whole(make_app, make_settings, fake_as, serve):
    """A chunked body of exactly MAX_REQUEST_BYTES is read to its last byte and stored."""
    app = make_app(make_settings(max_request_bytes=1024))
    server = serve(app)
    headers = {**bearer(fake_as.issue(WRITE)), "Content-Type": "application/json"}
    exact = json.dumps({"body": "y" * (1024 - 12)}).encode()
    assert len(exact) == 1024
    response = post_chunked(server.url, "/api/notes", exact, headers, chunk_size=100)
    assert response.status == 201
    assert json.loads(response.body)["body"] == "y" * 1012
    assert note_count(app) == 1
