"""The resource server's RFC 6750 handling of every kind of bearer token, and of AS outages.

A stand-in introspection endpoint (fake_as.py) is used here because these tests exercise the
resource server's handling of AS behaviours the real AS cannot be made to produce on demand:
timeouts, 5xx/429, non-JSON, refused connections, tokens with a foreign issuer or audience, or
an expiry it still calls active. The real end-to-end tests live in tests/end_to_end/.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import time

import pytest

from tests.resource_server.fake_as import TricklingAuthorizationServer
from tests.resource_server.helpers import add_note, bearer, note_count

REALM = 'Bearer realm="tessera"'
# RFC 9449 §7.2: a resource server accepting both schemes offers both in the bare challenge.
BARE_CHALLENGE = f'{REALM}, DPoP realm="tessera", algs="ES256 EdDSA Ed25519 RS256"'
# RFC 6750 §3: realm, error, error_description (RFC 6749 §5.2 characters), optional scope.
CHALLENGE = re.compile(
    r'Bearer realm="tessera", error="(invalid_request|invalid_token|insufficient_scope)", '
    r'error_description="[\x20\x21\x23-\x5b\x5d-\x7e]+"(, scope="[\x21\x23-\x5b\x5d-\x7e ]+")?'
)


def assert_challenge(response, status: int, error: str, scope: str | None = None) -> None:
    assert response.status_code == status
    header = response.headers["WWW-Authenticate"]
    match = CHALLENGE.fullmatch(header)
    assert match, header
    assert match.group(1) == error
    assert header.endswith(f', scope="{scope}"') if scope else "scope=" not in header
    assert response.headers["Cache-Control"] == "no-store"
    assert response.mimetype == "application/json"
    assert response.json["error"] == error
    assert re.fullmatch(r"[\x20\x21\x23-\x5b\x5d-\x7e]+", response.json["error_description"])


def assert_unavailable(response) -> None:
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "7"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.json["error"] == "temporarily_unavailable"
    assert response.json["error_description"]
    assert "WWW-Authenticate" not in response.headers


def test_missing_authorization_header_gets_401_without_error_code(client, fake_as):
    """No Authorization header: 401, the Bearer and DPoP challenges without an error code, no
    error in the body."""
    response = client.get("/api/notes")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == BARE_CHALLENGE
    assert response.headers["Cache-Control"] == "no-store"
    assert response.json == {}
    assert fake_as.calls == []


@pytest.mark.parametrize("value", ["Basic YWxpY2U6c2VjcmV0", "Digest abc", "Token abc"])
def test_other_authorization_scheme_gets_401_without_error_code(client, value):
    """A scheme other than Bearer or DPoP is no token authentication: the bare challenge."""
    response = client.get("/api/notes", headers={"Authorization": value})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == BARE_CHALLENGE
    assert response.json == {}


def test_lowercase_bearer_scheme_is_accepted(client, fake_as):
    """The scheme is case-insensitive (RFC 7235 §2.1)."""
    token = fake_as.issue("notes:read")
    response = client.get("/api/notes", headers={"Authorization": f"bearer {token}"})
    assert response.status_code == 200


@pytest.mark.parametrize(
    "value",
    ["Bearer", "Bearer ", "Bearer two tokens", 'Bearer "quoted"', "Bearer a=b", "Bearer t,u"],
)
def test_malformed_bearer_credentials_get_invalid_token(client, fake_as, value):
    """Bearer with no, several or non-b64token credentials: 401 invalid_token, no AS call."""
    response = client.get("/api/notes", headers={"Authorization": value})
    assert_challenge(response, 401, "invalid_token")
    assert fake_as.calls == []


def test_token_longer_than_8192_chars_gets_invalid_token(client, fake_as):
    """An oversized token is refused before introspection."""
    response = client.get("/api/notes", headers=bearer("a" * 8193))
    assert_challenge(response, 401, "invalid_token")
    assert fake_as.calls == []


def test_token_in_header_and_query_gets_400_invalid_request(client, fake_as):
    """RFC 6750 §2: more than one method (header + query) is invalid_request."""
    token = fake_as.issue("notes:read")
    response = client.get(f"/api/notes?access_token={token}", headers=bearer(token))
    assert_challenge(response, 400, "invalid_request")


def test_token_in_header_and_form_body_gets_400_invalid_request(app, client, fake_as):
    """RFC 6750 §2: more than one method (header + form body) is invalid_request; no note."""
    token = fake_as.issue("notes:write")
    response = client.post(
        "/api/notes",
        data={"access_token": token, "body": "x"},
        headers=bearer(token),
    )
    assert_challenge(response, 400, "invalid_request")
    assert note_count(app) == 0


def test_inactive_token_gets_401_invalid_token(client, fake_as):
    """A token the AS calls inactive (unknown, revoked, expired) is invalid_token."""
    response = client.get("/api/notes", headers=bearer("revoked-or-unknown"))
    assert_challenge(response, 401, "invalid_token")
    assert len(fake_as.calls) == 1


def test_refresh_token_presented_as_bearer_is_invalid_token(client, fake_as):
    """token_use other than access_token (a refresh token) never opens a resource."""
    token = fake_as.issue("notes:read", token_use="refresh_token")
    assert_challenge(client.get("/api/notes", headers=bearer(token)), 401, "invalid_token")


def test_token_without_token_use_is_accepted(client, fake_as):
    """token_use is checked only when the AS sends it."""
    token = fake_as.issue("notes:read", token_use=None)
    assert client.get("/api/notes", headers=bearer(token)).status_code == 200


def test_token_past_exp_is_invalid_token_even_if_active(client, fake_as):
    """RFC 7519 §4.1.4: exp in the past is refused even when the AS says active."""
    token = fake_as.issue("notes:read", exp=1_000_000_000)
    assert_challenge(client.get("/api/notes", headers=bearer(token)), 401, "invalid_token")


def test_token_from_other_issuer_is_invalid_token(client, fake_as):
    """An `iss` other than the expected issuer (default AUTH_SERVER_URL) is invalid_token."""
    token = fake_as.issue("notes:read", iss="https://evil.example")
    assert_challenge(client.get("/api/notes", headers=bearer(token)), 401, "invalid_token")


def test_token_without_issuer_is_invalid_token(client, fake_as):
    """A missing `iss` does not match the expected issuer."""
    token = fake_as.issue("notes:read", iss=None)
    assert_challenge(client.get("/api/notes", headers=bearer(token)), 401, "invalid_token")


def test_token_for_other_audience_is_invalid_token(app, client, fake_as):
    """RFC 9068 §4: a token whose aud is another resource is rejected as invalid: 401
    invalid_token with the challenge, not 403 insufficient_scope; nothing stored."""
    token = fake_as.issue("notes:read notes:write", aud="urn:tessera:billing")
    response = client.get("/api/notes", headers=bearer(token))
    assert_challenge(response, 401, "invalid_token")
    response = client.post("/api/notes", json={"body": "x"}, headers=bearer(token))
    assert_challenge(response, 401, "invalid_token")
    assert note_count(app) == 0


def test_token_without_audience_is_invalid_token(client, fake_as):
    """No `aud` at all does not include ours: 401 invalid_token."""
    token = fake_as.issue("notes:read", aud=None)
    response = client.get("/api/notes", headers=bearer(token))
    assert_challenge(response, 401, "invalid_token")


def test_token_with_audience_list_including_ours_is_accepted(client, fake_as):
    """`aud` as an array that contains our audience is accepted."""
    token = fake_as.issue("notes:read", aud=["urn:tessera:billing", "urn:tessera:notes"])
    assert client.get("/api/notes", headers=bearer(token)).status_code == 200


def test_token_without_required_scope_gets_403_listing_required_scope(app, client, fake_as):
    """Missing scope: 403 insufficient_scope with scope="notes:write"; nothing stored."""
    token = fake_as.issue("notes:read profile")
    response = client.post("/api/notes", json={"body": "hi"}, headers=bearer(token))
    assert_challenge(response, 403, "insufficient_scope", scope="notes:write")
    assert note_count(app) == 0


def test_token_without_any_scope_gets_403(client, fake_as):
    """A token with no scope at all gets insufficient_scope."""
    token = fake_as.issue(scope="")
    response = client.get("/api/me", headers=bearer(token))
    assert_challenge(response, 403, "insufficient_scope", scope="profile")


def test_token_without_subject_cannot_touch_notes(app, client, fake_as):
    """A token with no `sub` cannot own notes: invalid_token, nothing stored."""
    token = fake_as.issue("notes:write", sub=None)
    response = client.post("/api/notes", json={"body": "hi"}, headers=bearer(token))
    assert_challenge(response, 401, "invalid_token")
    assert note_count(app) == 0


def test_as_timeout_gets_503_with_retry_after(client, fake_as):
    """An AS slower than the read timeout: 503 temporarily_unavailable with Retry-After."""
    fake_as.delay = 2.0
    assert_unavailable(client.get("/api/notes", headers=bearer("tok")))


def test_as_connection_refused_gets_503(make_app, make_settings, stoppable_fake_as):
    """A stopped AS (connection refused): 503, never 500."""
    settings = make_settings(auth_server_url=stoppable_fake_as.url)
    client = make_app(settings).test_client()
    stoppable_fake_as.stop()
    assert_unavailable(client.get("/api/notes", headers=bearer("tok")))


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_as_server_error_gets_503(client, fake_as, status):
    """5xx or 429 from the AS: 503 with Retry-After."""
    fake_as.fail_with(status, b"<html>down</html>", "text/html")
    assert_unavailable(client.get("/api/notes", headers=bearer("tok")))


@pytest.mark.parametrize("body", [b"<html>ok</html>", b'{"scope": "notes:read"}', b"null"])
def test_as_non_json_or_missing_active_gets_503(client, fake_as, body):
    """A 200 from the AS that is not an RFC 7662 answer: 503, not a guess."""
    fake_as.fail_with(200, body, "application/json")
    assert_unavailable(client.get("/api/notes", headers=bearer("tok")))


@pytest.mark.parametrize(
    "body",
    [
        b'{"active": true, "scope": "notes:read", "aud": "urn:tessera:notes", "exp": 1e999}',
        b'{"active": true, "scope": "notes:read", "aud": "urn:tessera:notes", "exp": NaN}',
        b"[" * 200_000 + b"]" * 200_000,
        b'{"active": true, "x": ' + b"[" * 20_000 + b"]" * 20_000 + b"}",
    ],
    ids=["exp-1e999", "exp-NaN", "nested-200000", "nested-20000"],
)
def test_as_answer_that_breaks_json_parsing_gets_503(app, client, fake_as, body):
    """An infinite exp (OverflowError in int()) or JSON nested too deep for json.loads
    (RecursionError) is a malformed answer from the AS: 503, never a 500; nothing stored."""
    fake_as.fail_with(200, body, "application/json")
    assert_unavailable(client.get("/api/notes", headers=bearer("tok")))
    assert_unavailable(client.post("/api/notes", json={"body": "x"}, headers=bearer("tok")))
    assert note_count(app) == 0


def test_trickling_as_gets_503_by_the_total_deadline(make_app, make_settings):
    """An AS that sends its answer one byte every 50 ms (each byte well within the 0.3 s read
    timeout, the whole answer over 10 s) costs the caller INTROSPECTION_TOTAL_TIMEOUT (0.6 s)
    and a 503, not the time the AS chooses to take."""
    server = TricklingAuthorizationServer()
    try:
        settings = make_settings(auth_server_url=server.url, introspection_total_timeout=0.6)
        client = make_app(settings).test_client()
        started = time.monotonic()
        response = client.get("/api/notes", headers=bearer("tok"))
        elapsed = time.monotonic() - started
    finally:
        server.stop()
    assert_unavailable(response)
    assert 0.5 < elapsed < 3.0, elapsed


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_as_answer_over_the_size_cap_gets_503(make_app, make_settings, fake_as, chunked):
    """An answer over INTROSPECTION_MAX_RESPONSE_BYTES is a malformed answer: 503."""
    fake_as.fail_with(200, json.dumps({"active": True, "pad": "x" * 5000}).encode())
    fake_as.content_type, fake_as.chunked = "application/json", chunked
    client = make_app(make_settings(introspection_max_response_bytes=4096)).test_client()
    assert_unavailable(client.get("/api/notes", headers=bearer("tok")))


def test_as_rejecting_our_credentials_gets_503_and_logs_error(make_app, make_settings, caplog):
    """Wrong RESOURCE_CLIENT_SECRET: the caller gets 503, the operator an ERROR log line."""
    client = make_app(make_settings(resource_client_secret="wrong")).test_client()
    with caplog.at_level(logging.ERROR):
        response = client.get("/api/notes", headers=bearer("tok"))
    assert_unavailable(response)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("rejected" in message and "RESOURCE_CLIENT_SECRET" in message for message in errors)


def test_bad_requests_change_no_stored_notes(app, client, fake_as):
    """Refused writes and deletes leave the stored notes exactly as they were."""
    note_id = add_note(app, "alice-subject", "keep me")
    read_only = fake_as.issue("notes:read")
    for response in (
        client.post("/api/notes", json={"body": "x"}),
        client.post("/api/notes", json={"body": "x"}, headers=bearer("inactive")),
        client.post("/api/notes", json={"body": "x"}, headers=bearer(read_only)),
        client.delete(f"/api/notes/{note_id}"),
        client.delete(f"/api/notes/{note_id}", headers=bearer("inactive")),
        client.delete(f"/api/notes/{note_id}", headers=bearer(read_only)),
    ):
        assert response.status_code in (401, 403)
    fake_as.fail_with(503)
    response = client.delete(f"/api/notes/{note_id}", headers=bearer(read_only))
    assert response.status_code == 503
    assert note_count(app) == 1


def test_request_id_is_forwarded_to_as_and_echoed(client, fake_as):
    """A caller's X-Request-ID reaches the AS and comes back on the response."""
    token = fake_as.issue("notes:read")
    headers = {**bearer(token), "X-Request-ID": "trace-42"}
    response = client.get("/api/notes", headers=headers)
    assert response.headers["X-Request-ID"] == "trace-42"
    assert fake_as.calls[-1]["headers"]["X-Request-Id"] == "trace-42"


@pytest.mark.parametrize(
    "incoming",
    ["a b\\c", "a" * 65, "a" * 8000, "id\tx", "<script>", "ä", "x;y=1", 'q"'],
    ids=["unsafe", "65-chars", "8000-chars", "tab", "markup", "non-ascii", "params", "quote"],
)
def test_invalid_request_id_is_replaced(client, fake_as, incoming):
    """An X-Request-ID that is not 1-64 characters of [A-Za-z0-9._-] is replaced by a generated
    one, which is what the AS is sent and what the caller gets back."""
    token = fake_as.issue("notes:read")
    response = client.get("/api/notes", headers={**bearer(token), "X-Request-ID": incoming})
    generated = response.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert fake_as.calls[-1]["headers"]["X-Request-Id"] == generated


@pytest.mark.parametrize(
    "value",
    [
        "",
        " ",
        "Bearer",
        "Bearer  ",
        "Bearer\ttoken",
        "Bearer ÿþ",
        "Bearer \x7f",
        "Bearer " + "=" * 20,
        "Bearer " + "a" * 100_000,
        "Bearer Bearer token",
        "Bearer a, Bearer b",
        'Bearer realm="x"',
        "Basic",
        "Basic !!!",
        "NTLM TlRMTVNTUAAB",
        ",,,",
        "Bearer tok\\en",
    ],
)
def test_garbage_authorization_header_never_500(client, value):
    """Whatever the Authorization header holds, the answer is a 4xx challenge."""
    response = client.get("/api/notes", headers={"Authorization": value})
    assert response.status_code in (400, 401)
    assert response.headers["WWW-Authenticate"].startswith(REALM)


def test_raw_non_ascii_authorization_bytes_never_500(make_app, serve):
    """Bytes that are not even ASCII, sent over a real socket, still get a 401."""
    server = serve(make_app())
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
        sock.sendall(
            b"GET /api/notes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\x00\r\n"
            b"Connection: close\r\n\r\n"
        )
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    assert data.startswith(b"HTTP/1.1 401")
    assert b'error="invalid_token"' in data
