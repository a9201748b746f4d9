"""IntrospectionClient against a stand-in introspection endpoint.

A stand-in (tests/resource_server/fake_as.py) is used here because these tests exercise how the
client handles authorization-server behaviours the real AS cannot be made to produce on demand:
timeouts, 5xx and 429, non-JSON, refused connections, dropped keep-alive connections. The real
end-to-end tests live in tests/end_to_end/.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import socket
import threading
import time

import pytest

from shared.guard.introspection import (
    IntrospectionClient,
    IntrospectionCredentialsRejected,
    IntrospectionError,
    IntrospectionResult,
    IntrospectionUnavailable,
    fingerprint,
)
from tests.resource_server.fake_as import CLIENT_ID, CLIENT_SECRET, TricklingAuthorizationServer


@pytest.fixture
def make_client(fake_as):
    clients: list[IntrospectionClient] = []

    def factory(**kwargs) -> IntrospectionClient:
        kwargs = {
            "introspection_url": f"{fake_as.url}/oauth/introspect",
            "client_id": fake_as.client_id,
            "client_secret": fake_as.client_secret,
            "connect_timeout": 0.5,
            "read_timeout": 0.3,
            **kwargs,
        }
        client = IntrospectionClient(**kwargs)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


def test_active_token_result_carries_response_members(fake_as, make_client):
    """An active answer becomes a frozen result with scope and aud as tuples."""
    token = fake_as.issue("notes:read profile", aud=["urn:a", "urn:b"])
    result = make_client().introspect(token)
    assert result.active is True
    assert result.scope == ("notes:read", "profile")
    assert result.aud == ("urn:a", "urn:b")
    assert (result.sub, result.username, result.client_id) == (
        "alice-subject",
        "alice",
        "notes-web",
    )
    assert result.iss == fake_as.url
    assert result.token_use == "access_token"
    assert isinstance(result.exp, int) and isinstance(result.iat, int)
    assert result.raw["token_type"] == "Bearer"
    assert result.duration > 0
    with pytest.raises(AttributeError):
        result.active = False  # type: ignore[misc]


def test_string_audience_is_normalized_to_tuple(fake_as, make_client):
    """RFC 7519 §4.1.3: a single string aud becomes a one-element tuple."""
    token = fake_as.issue(aud="urn:tessera:notes")
    assert make_client().introspect(token).aud == ("urn:tessera:notes",)


def test_unknown_token_is_inactive(fake_as, make_client):
    """{"active": false} is a result, not an error."""
    result = make_client().introspect("unknown-token")
    assert result.active is False
    assert result.scope == () and result.sub is None


def test_inactive_answer_ignores_other_members():
    """RFC 7662 §2.2: nothing of an inactive answer is relied upon."""
    result = IntrospectionResult.from_response({"active": False, "sub": "x", "scope": "a"})
    assert (result.sub, result.scope) == (None, ())


@pytest.mark.parametrize(
    "body",
    [
        {"active": True, "exp": "soon"},
        {"active": True, "exp": True},
        {"active": True, "aud": 3},
        {"active": True, "aud": ["a", 1]},
        {"active": True, "sub": 5},
        {"active": True, "scope": ["a"]},
    ],
)
def test_malformed_members_are_refused(body):
    """Wrongly typed members fail closed instead of being skipped."""
    with pytest.raises(ValueError):
        IntrospectionResult.from_response(body)


@pytest.mark.parametrize(
    "exp", [float("inf"), float("-inf"), float("nan"), 1e308 * 10, "1e999"], ids=repr
)
def test_non_finite_times_are_refused(exp):
    """exp/iat that json.loads turned into infinity or NaN are malformed (ValueError), not an
    OverflowError from int() and not "never expires"."""
    with pytest.raises(ValueError):
        IntrospectionResult.from_response({"active": True, "exp": exp})
    with pytest.raises(ValueError):
        IntrospectionResult.from_response({"active": True, "iat": exp})


def test_integer_times_are_kept_exactly():
    """A plain integer exp stays that integer, however large."""
    assert IntrospectionResult.from_response({"active": True, "exp": 10**30}).exp == 10**30
    assert IntrospectionResult.from_response({"active": True, "exp": 1.5e9}).exp == 1_500_000_000


@pytest.mark.parametrize(
    "body",
    [
        b'{"active": true, "exp": 1e999}',
        b"[" * 50_000 + b"]" * 50_000,
        b'{"active": true, "ext": ' + b'{"a": ' * 5_000 + b"1" + b"}" * 5_001,
    ],
    ids=["exp-1e999", "nested-array", "nested-member"],
)
def test_answer_that_breaks_json_parsing_is_a_bad_response(fake_as, make_client, body):
    """Infinite exp and JSON too deep for json.loads are IntrospectionUnavailable(bad_response),
    the one error a caller turns into 503, never OverflowError or RecursionError."""
    fake_as.fail_with(200, body, "application/json")
    with pytest.raises(IntrospectionUnavailable) as caught:
        make_client().introspect("tok")
    assert caught.value.outcome == "bad_response"


def test_request_is_form_post_with_hint_basic_auth_and_request_id(fake_as, make_client):
    """POST token + token_type_hint=access_token, Basic auth, X-Request-ID forwarded."""
    token = fake_as.issue()
    make_client().introspect(token, request_id="req-123")
    call = fake_as.calls[-1]
    assert call["form"] == {"token": token, "token_type_hint": "access_token"}
    assert call["headers"]["X-Request-Id"] == "req-123"
    expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert call["headers"]["Authorization"] == f"Basic {expected}"


def test_no_request_id_header_when_none_given(fake_as, make_client):
    """Without a request id, no X-Request-ID header is sent."""
    make_client().introspect(fake_as.issue())
    assert "X-Request-Id" not in fake_as.calls[-1]["headers"]


def test_client_credentials_are_form_urlencoded_before_basic(fake_as, make_client):
    """RFC 6749 §2.3.1: ':' and non-ASCII in id or secret are percent-encoded first."""
    fake_as.client_id, fake_as.client_secret = "rs:1 x", "pä:ss/+%"
    client = make_client(client_id="rs:1 x", client_secret="pä:ss/+%")
    assert client.introspect(fake_as.issue()).active
    sent = fake_as.calls[-1]["headers"]["Authorization"].split(" ")[1]
    assert base64.b64decode(sent).decode() == "rs%3A1%20x:p%C3%A4%3Ass%2F%2B%25"


def test_read_timeout_raises_unavailable_without_retry(fake_as, make_client):
    """A slow AS is one call that times out, not two."""
    fake_as.delay = 2.0
    started = time.monotonic()
    with pytest.raises(IntrospectionUnavailable) as caught:
        make_client().introspect("tok")
    assert time.monotonic() - started < 1.0
    assert caught.value.outcome == "timeout"
    time.sleep(0.1)
    assert len(fake_as.calls) == 1


def test_connection_refused_raises_unavailable(stoppable_fake_as, make_client):
    """A stopped AS (connection refused) is IntrospectionUnavailable."""
    client = make_client(introspection_url=f"{stoppable_fake_as.url}/oauth/introspect")
    stoppable_fake_as.stop()
    with pytest.raises(IntrospectionUnavailable) as caught:
        client.introspect("tok")
    assert caught.value.outcome == "connection_error"
    assert isinstance(caught.value, IntrospectionError)


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_server_error_or_throttling_raises_unavailable(fake_as, make_client, status):
    """5xx and 429 from the AS are IntrospectionUnavailable."""
    fake_as.fail_with(status, b"busy")
    with pytest.raises(IntrospectionUnavailable) as caught:
        make_client().introspect("tok")
    assert caught.value.outcome == "server_error"


@pytest.mark.parametrize(
    "body",
    [b"<html>oops</html>", b"", b"[1, 2]", b'{"active": "yes"}', b'{"scope": "a"}'],
)
def test_non_json_or_missing_active_raises_unavailable(fake_as, make_client, body):
    """A 200 without a JSON object holding a boolean `active` is IntrospectionUnavailable."""
    fake_as.fail_with(200, body, "application/json")
    with pytest.raises(IntrospectionUnavailable) as caught:
        make_client().introspect("tok")
    assert caught.value.outcome == "bad_response"


@pytest.mark.parametrize("status", [301, 400, 404])
def test_unexpected_status_raises_unavailable(fake_as, make_client, status):
    """Redirects are not followed, and any other status is IntrospectionUnavailable."""
    fake_as.fail_with(status)
    with pytest.raises(IntrospectionUnavailable):
        make_client().introspect("tok")


def test_rejected_credentials_raise_unavailable_and_log_error(fake_as, make_client, caplog):
    """401 from the AS: an ERROR naming the credentials, and still only IntrospectionUnavailable."""
    client = make_client(client_secret="wrong")
    with (
        caplog.at_level(logging.ERROR, logger="tessera.introspection"),
        pytest.raises(IntrospectionCredentialsRejected) as caught,
    ):
        client.introspect("tok")
    assert isinstance(caught.value, IntrospectionUnavailable)
    assert caught.value.outcome == "credentials_rejected"
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "RESOURCE_CLIENT_SECRET" in record.getMessage()
    assert "rejected" in record.getMessage()


def test_forbidden_credentials_raise_unavailable(fake_as, make_client):
    """403 from the AS (client may not introspect) is handled like 401."""
    fake_as.fail_with(403, b'{"error": "unauthorized_client"}', "application/json")
    with pytest.raises(IntrospectionCredentialsRejected):
        make_client().introspect("tok")


def test_token_value_is_never_logged(fake_as, make_client, caplog):
    """Logs carry a fingerprint of the token, never the token."""
    token = fake_as.issue()
    client = make_client()
    with caplog.at_level(logging.DEBUG):
        for status in (500, 200):
            fake_as.fail_with(status, b"not json")
            with pytest.raises(IntrospectionUnavailable):
                client.introspect(token, request_id="r1")
        fake_as.delay, fake_as.status = 2.0, None
        with pytest.raises(IntrospectionUnavailable):
            client.introspect(token)
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert token not in text
    assert fingerprint(token) in text


def test_on_call_hook_gets_duration_and_outcome(fake_as, make_client):
    """Each call reports (monotonic duration, outcome) to on_call, successes and failures."""
    seen: list[tuple[float, str]] = []
    client = make_client(on_call=lambda duration, outcome: seen.append((duration, outcome)))
    client.introspect(fake_as.issue())
    client.introspect("unknown")
    fake_as.fail_with(503)
    with pytest.raises(IntrospectionUnavailable) as caught:
        client.introspect("tok")
    assert [outcome for _, outcome in seen] == ["active", "inactive", "server_error"]
    assert all(duration > 0 for duration, _ in seen)
    assert caught.value.duration == seen[-1][0]


def test_failing_on_call_hook_does_not_break_the_call(fake_as, make_client):
    """A broken metrics hook never turns an answer into an error."""
    client = make_client(on_call=lambda duration, outcome: 1 / 0)
    assert client.introspect(fake_as.issue()).active


class RawServer:
    """A minimal HTTP/1.1 keep-alive server on a raw socket. It closes each of the first `drop`
    connections after reading a request without answering, as an AS that restarted does to a
    pooled keep-alive connection; on the others it answers every request and keeps them open.
    (werkzeug's server closes every connection, so it can show neither behaviour.)"""

    ANSWER = json.dumps({"active": True, "scope": "a", "aud": "x"}).encode()

    def __init__(self, drop: int = 0) -> None:
        self.drop = drop
        self.connections = 0
        self.requests = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/oauth/introspect"
        self._open: list[socket.socket] = []
        self._marker: tuple[str, int] | None = None
        self._marker_accepted = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, peer = self._sock.accept()
            except TimeoutError:
                continue
            if peer == self._marker:
                conn.close()
                self._marker_accepted.set()
                continue
            self.connections += 1
            self._open.append(conn)
            drop = self.connections <= self.drop
            threading.Thread(target=self._serve, args=(conn, drop), daemon=True).start()

    def connections_so_far(self) -> int:
        """Every connection opened before this call, counted: a marker connection reaches the
        one accept loop after all of them (the listen backlog is first in, first out)."""
        with socket.socket() as marker:
            marker.bind(("127.0.0.1", 0))  # its address is known before it connects
            self._marker = marker.getsockname()[:2]
            marker.connect(self._sock.getsockname()[:2])
            assert self._marker_accepted.wait(5), "the accept loop never took the marker"
        return self.connections

    def _serve(self, conn: socket.socket, drop: bool) -> None:
        with conn:
            buffer = b""
            while True:
                request, buffer = self._read_request(conn, buffer)
                if request is None:
                    return
                self.requests += 1
                if drop:
                    return
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(self.ANSWER), self.ANSWER)
                )

    @staticmethod
    def _read_request(conn: socket.socket, data: bytes) -> tuple[bytes | None, bytes]:
        try:
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return None, b""
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            while len(rest) < length:
                rest += conn.recv(4096)
        except OSError:
            return None, b""
        return head, rest[length:]

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=2)
        self._sock.close()
        for conn in self._open:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def raw_server():
    servers: list[RawServer] = []

    def start(drop: int = 0) -> RawServer:
        server = RawServer(drop)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def raw_client():
    clients: list[IntrospectionClient] = []

    def factory(url: str) -> IntrospectionClient:
        client = IntrospectionClient(url, "rs", "secret", connect_timeout=0.5, read_timeout=0.5)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


def test_keep_alive_connection_is_reused(raw_server, raw_client):
    """Consecutive calls reuse one pooled keep-alive connection (one Session per client)."""
    server = raw_server()
    client = raw_client(server.url)
    for _ in range(3):
        assert client.introspect("tok").active
    assert (server.connections, server.requests) == (1, 3)


def test_dropped_connection_is_retried_once(raw_server, raw_client):
    """A connection closed under us (stale keep-alive) is retried immediately, once."""
    server = raw_server(drop=1)
    result = raw_client(server.url).introspect("tok")
    assert result.active
    assert server.connections == 2


def test_second_dropped_connection_is_not_retried_again(raw_server, raw_client):
    """Two connection errors in a row: IntrospectionUnavailable after exactly two attempts."""
    server = raw_server(drop=5)
    with pytest.raises(IntrospectionUnavailable) as caught:
        raw_client(server.url).introspect("tok")
    assert caught.value.outcome == "connection_error"
    assert server.connections_so_far() == 2


@pytest.fixture
def trickling_as():
    servers: list[TricklingAuthorizationServer] = []

    def start(**options) -> TricklingAuthorizationServer:
        server = TricklingAuthorizationServer(**options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.mark.parametrize("head_too", [True, False], ids=["head-and-body", "body-only"])
def test_trickling_answer_ends_at_the_total_deadline(trickling_as, head_too):
    """An AS sending one byte every 50 ms never trips the 0.3 s read timeout (its whole answer
    would take over 10 s); the call still ends as a timeout at its 0.6 s total deadline."""
    server = trickling_as(head_too=head_too)
    with IntrospectionClient(
        f"{server.url}/oauth/introspect",
        "rs",
        "secret",
        connect_timeout=0.5,
        read_timeout=0.3,
        total_timeout=0.6,
    ) as client:
        started = time.monotonic()
        with pytest.raises(IntrospectionUnavailable) as caught:
            client.introspect("tok")
        elapsed = time.monotonic() - started
    assert caught.value.outcome == "timeout"
    assert server.bytes_sent > 0  # it was answering, only slowly
    assert 0.5 < elapsed < 3.0, elapsed


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_answer_over_max_response_bytes_is_a_bad_response(fake_as, make_client, chunked):
    """An answer over max_response_bytes is IntrospectionUnavailable(bad_response) whether
    its Content-Length says so up front or it arrives chunked; the next call works."""
    fake_as.fail_with(200, json.dumps({"active": True, "pad": "x" * 2000}).encode())
    fake_as.content_type, fake_as.chunked = "application/json", chunked
    client = make_client(max_response_bytes=1024)
    with pytest.raises(IntrospectionUnavailable) as caught:
        client.introspect("tok")
    assert caught.value.outcome == "bad_response"
    fake_as.status = None
    assert client.introspect(fake_as.issue()).active


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_answer_of_exactly_max_response_bytes_is_read(fake_as, make_client, chunked):
    """The cap is inclusive: 1024 bytes (JSON padded with trailing spaces) are parsed."""
    body = json.dumps({"active": True, "scope": "a", "aud": "x"}).encode().ljust(1024)
    fake_as.fail_with(200, body, "application/json")
    fake_as.chunked = chunked
    assert make_client(max_response_bytes=1024).introspect("tok").scope == ("a",)
