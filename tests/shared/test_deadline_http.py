"""shared.protocol.deadline_http: a small request goes out in one write (the deadline
behaviour itself is proved against slow peers in tests/shared/test_introspection.py)."""

from __future__ import annotations

from shared.protocol.deadline_http import deadline_pool


class RecordingSocket:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def settimeout(self, timeout) -> None:
        pass

    def sendall(self, data) -> None:
        self.writes.append(bytes(data))


def _connection_with(sock: RecordingSocket):
    pool = deadline_pool("http://127.0.0.1:9/oauth/introspect")
    connection = pool.ConnectionCls(host="127.0.0.1", port=9)
    connection.sock = sock  # already "connected": nothing dials out
    return connection


def test_a_form_body_is_written_with_its_headers_in_one_send():
    sock = RecordingSocket()
    form = b"token=abc&token_type_hint=access_token"
    _connection_with(sock).request(
        "POST", "/oauth/introspect", body=form, headers={"Content-Type": "x-www-form-urlencoded"}
    )
    [write] = sock.writes
    head, _, body = write.partition(b"\r\n\r\n")
    assert head.startswith(b"POST /oauth/introspect HTTP/1.1\r\n")
    assert b"Content-Length: 38" in head.split(b"\r\n")
    assert body == form


def test_a_request_without_a_body_is_its_headers_alone():
    sock = RecordingSocket()
    _connection_with(sock).request("GET", "/healthz")
    [write] = sock.writes
    assert write.startswith(b"GET /healthz HTTP/1.1\r\n") and write.endswith(b"\r\n\r\n")


def test_a_large_body_is_written_after_its_headers():
    sock = RecordingSocket()
    body = b"x" * (64 * 1024 + 1)
    _connection_with(sock).request("POST", "/upload", body=body)
    assert len(sock.writes) == 2 and sock.writes[1] == body
