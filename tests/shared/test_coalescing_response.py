"""The worker's response (shared/service/coalescing_response.py) puts the same bytes on the wire
as gunicorn's, the head and the first body bytes in one send."""

from __future__ import annotations

import io

import pytest
from gunicorn.config import Config
from gunicorn.http import wsgi
from gunicorn.http.parser import RequestParser

from shared.service.coalescing_response import CoalescingResponse


class RecordingSocket:
    """What a response sends, call by call."""

    def __init__(self, request: bytes) -> None:
        self._request = io.BytesIO(request)
        self.sends: list[bytes] = []

    def recv(self, size: int) -> bytes:
        return self._request.read(size)

    def sendall(self, data: bytes) -> None:
        self.sends.append(bytes(data))


def answer(
    response_class: type,
    method: str,
    status: str,
    headers: list[tuple[str, str]],
    body: list[bytes],
) -> RecordingSocket:
    sock = RecordingSocket(f"{method} /x HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    cfg = Config()
    request = next(iter(RequestParser(cfg, sock, ("127.0.0.1", 1))))
    original = wsgi.Response
    wsgi.Response = response_class
    try:
        response, _environ = wsgi.create(request, sock, ("127.0.0.1", 1), ("127.0.0.1", 2), cfg)
    finally:
        wsgi.Response = original
    response.start_response(status, headers)
    for part in body:
        response.write(part)
    response.close()
    return sock


SHAPES = [
    pytest.param("GET", "200 OK", [("Content-Length", "11")], [b"hello", b" world"], id="length"),
    pytest.param("GET", "200 OK", [], [b"hello", b" world"], id="chunked"),
    pytest.param("GET", "204 No Content", [], [], id="no-body"),
    pytest.param("HEAD", "200 OK", [("Content-Length", "5")], [b"hello"], id="head"),
    pytest.param("GET", "200 OK", [("Content-Length", "0")], [b""], id="empty"),
]


@pytest.mark.parametrize(("method", "status", "headers", "body"), SHAPES)
def test_the_wire_bytes_are_gunicorns(method, status, headers, body):
    ours = answer(CoalescingResponse, method, status, headers, body)
    theirs = answer(wsgi.Response, method, status, headers, body)

    def without_date(wire: bytes) -> bytes:
        return b"\r\n".join(line for line in wire.split(b"\r\n") if not line.startswith(b"Date: "))

    assert without_date(b"".join(ours.sends)) == without_date(b"".join(theirs.sends))


def test_head_and_body_leave_in_one_send():
    sock = answer(
        CoalescingResponse, "GET", "200 OK", [("Content-Length", "16")], [b'{"status":"ok"}\n']
    )

    assert len(sock.sends) == 1
    assert sock.sends[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert sock.sends[0].endswith(b'\r\n\r\n{"status":"ok"}\n')


def test_a_response_without_body_still_sends_its_head():
    sock = answer(CoalescingResponse, "GET", "204 No Content", [], [])

    assert len(sock.sends) == 1
    assert sock.sends[0].startswith(b"HTTP/1.1 204 No Content\r\n")
