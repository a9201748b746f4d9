"""Behaviour the OpenAPI documents promise that is being fixed in parallel (known findings of
the security review, not fixed in this branch). Each test states the documented behaviour;
xfail(strict=False) until the fix lands, then the marker goes. The fuzz runs themselves are
never marked: tests/fuzz/test_api_fuzz.py folds note ids into range instead (NOTE_ID_CAP)."""

from __future__ import annotations

import pytest

from tests.support import ALICE


@pytest.mark.xfail(
    strict=False,
    reason="known finding (fixed in parallel): note ids beyond the integer column answer 500",
)
@pytest.mark.parametrize("note_id", [2**31, 2**63, 2**64])
@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_note_id_beyond_the_database_integer_is_404(auth, notes_api, method, note_id):
    token = auth.login(ALICE)["access_token"]
    response = notes_api.call(method, f"/api/notes/{note_id}", token)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


@pytest.mark.xfail(
    strict=False,
    reason="known finding (fixed in parallel): notes API answers lack Cache-Control: no-store",
)
def test_notes_api_answers_about_a_token_are_not_stored(auth, notes_api):
    token = auth.login(ALICE)["access_token"]
    for path in ("/api/me", "/api/notes"):
        response = notes_api.get(path, token)
        assert response.status_code == 200
        assert response.headers.get("Cache-Control") == "no-store"
