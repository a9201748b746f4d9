"""A stand-in RFC 7662 introspection endpoint for resource-server and protection-library tests.

It exists to make the authorization-server behaviours a resource server must survive happen on
demand: canned token answers, slowness, 5xx/429, a rejected client, non-JSON, being stopped.
The real authorization server cannot be made to do most of that, so the real end-to-end tests
live in tests/end_to_end/ and this only ever stands in for the AS's introspection endpoint.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from flask import Flask, Response, jsonify, request

from tests.live_server import LiveServer

CLIENT_ID = "notes-api"
CLIENT_SECRET = "rs-test-secret"
AUDIENCE = "urn:tessera:notes"


@dataclass
class FakeAuthorizationServer:
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    url: str = ""
    # token -> RFC 7662 response members for an active token
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Forced behaviour, whatever the token: a status with a raw body, and/or a delay.
    status: int | None = None
    body: bytes = b""
    content_type: str = "application/json"
    # Send the forced body in chunks (Transfer-Encoding: chunked, no Content-Length).
    chunked: bool = False
    delay: float = 0.0
    # What each call looked like: headers and form, for assertions.
    calls: list[dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    server: LiveServer | None = None

    def issue(self, scope: str = "notes:read notes:write profile", **members: Any) -> str:
        """Register an active access token for user alice (members override) and return it."""
        token = secrets.token_urlsafe(24)
        now = int(time.time())
        self.tokens[token] = {
            "active": True,
            "scope": scope,
            "client_id": "notes-web",
            "username": "alice",
            "sub": "alice-subject",
            "aud": AUDIENCE,
            "iss": self.url,
            "exp": now + 300,
            "iat": now,
            "jti": secrets.token_hex(8),
            "token_use": "access_token",
            "token_type": "Bearer",
            **members,
        }
        return token

    def fail_with(self, status: int, body: bytes = b"", content_type: str = "text/plain") -> None:
        self.status, self.body, self.content_type = status, body, content_type

    def stop(self) -> None:
        """Stop listening: further connections are refused (only for a server of its own)."""
        assert self.server is not None, "use the stoppable_fake_as fixture"
        self.release.set()
        self.server.stop()

    def wsgi_app(self) -> Flask:
        app = Flask(__name__)

        @app.post("/oauth/introspect")
        def introspect() -> Response | tuple[Response, int, dict[str, str]]:
            self.calls.append(
                {
                    "headers": dict(request.headers),
                    "form": request.form.to_dict(),
                    "remote_port": request.environ.get("REMOTE_PORT"),
                }
            )
            if self.delay:
                self.release.wait(self.delay)
            if self.status is not None:
                body = self.body
                if self.chunked:
                    # werkzeug sends a generator without Content-Length, chunked.
                    return Response(
                        (body[i : i + 4096] for i in range(0, len(body), 4096)),
                        self.status,
                        content_type=self.content_type,
                    )
                return Response(body, self.status, content_type=self.content_type)
            if not self._client_authenticated():
                challenge = {"WWW-Authenticate": 'Basic realm="tessera"'}
                return jsonify(error="invalid_client"), 401, challenge
            members = self.tokens.get(request.form.get("token", ""))
            return jsonify(members if members is not None else {"active": False})

        return app

    def _client_authenticated(self) -> bool:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Basic":
            return False
        userpass = base64.b64decode(encoded).decode()
        client_id, _, secret = userpass.partition(":")
        # RFC 6749 §2.3.1: both halves are form-urlencoded.
        return (unquote(client_id), unquote(secret)) == (self.client_id, self.client_secret)


def fake_as_on(server: LiveServer, *, own_server: bool = False) -> FakeAuthorizationServer:
    """A fresh stand-in mounted on ``server``: every test gets new state, and handlers still
    sleeping for an earlier test keep answering from that test's state."""
    fake = FakeAuthorizationServer(url=server.url, server=server if own_server else None)
    server.mount(fake.wsgi_app())
    return fake


@contextmanager
def shared_fake_as_server() -> Iterator[LiveServer]:
    """One server for a whole test directory: stopping a werkzeug server costs half a second
    (its poll interval), which per test would dominate the suite's run time."""
    server = LiveServer()
    try:
        yield server
    finally:
        server.stop()


class TricklingAuthorizationServer:
    """An introspection endpoint that sends its answer one byte at a time, ``interval`` apart:
    every byte arrives well within any read timeout, so only a deadline for the whole call
    stops a client from waiting until the last one. ``head_too``: the status line and headers
    trickle as well (else they are sent at once and only the body trickles). The real AS never
    does this, and werkzeug's server cannot send a response head byte by byte: a raw socket."""

    def __init__(self, interval: float = 0.05, head_too: bool = True) -> None:
        answer = json.dumps(
            {"active": True, "scope": "notes:read", "aud": AUDIENCE, "pad": "x" * 200}
        )
        self.head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(answer)
        )
        self.body = answer.encode()
        self.interval = interval
        self.head_too = head_too
        self.bytes_sent = 0
        self._stopped = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            if not self.head_too:
                conn.sendall(self.head)
            for byte in (self.head if self.head_too else b"") + self.body:
                if self._stopped.wait(self.interval):
                    return
                conn.sendall(bytes([byte]))
                self.bytes_sent += 1

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=2)
        self._sock.close()
