"""KeepAlivePoster (the introspection client's HTTP/1.1) against answers written byte for byte.

tests/shared/test_introspection.py covers the client's behaviour against a stand-in AS; these
cover the framing a real server or proxy in front of the AS may use and werkzeug's server never
does: chunks with extensions and trailers, interim 1xx answers, `Connection: close`, HTTP/1.0,
a body ended by closing the connection, and answers that are not HTTP at all.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time

import pytest

from shared.guard.introspection_http import (
    ConnectFailed,
    ConnectionDropped,
    KeepAlivePoster,
    ResponseTooLarge,
)

BODY = b'{"active": true}'


class ScriptedServer:
    """Answers the n-th request it reads, on whatever connection, with ``answers[n]`` sent as
    is; closes the connection after it when ``close_after`` says so."""

    def __init__(self, answers: list[bytes], close_after: bool = False) -> None:
        self.answers = answers
        self.close_after = close_after
        self.connections = 0
        self.requests: list[bytes] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/oauth/introspect"
        self._stopped = threading.Event()
        self._open: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            self._open.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            data = b""
            while True:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                head, _, data = data.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                while len(data) < length:
                    data += conn.recv(4096)
                self.requests.append(head + b"\r\n\r\n" + data[:length])
                data = data[length:]
                conn.sendall(self.answers[min(len(self.requests), len(self.answers)) - 1])
                if self.close_after:
                    return

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=2)
        self._sock.close()
        for conn in self._open:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def scripted():
    made: list[tuple[ScriptedServer, KeepAlivePoster]] = []

    def start(answers: list[bytes], close_after: bool = False, **options):
        server = ScriptedServer(answers, close_after)
        poster = KeepAlivePoster(server.url, {"Accept": "application/json"}, **options)
        made.append((server, poster))
        return server, poster

    yield start
    for server, poster in made:
        poster.close()
        server.stop()


def post(poster: KeepAlivePoster, *, max_body: int = 1024, timeout: float = 2.0, **kwargs):
    return poster.post(
        b"token=t",
        {"X-Request-ID": "r1"},
        connect_timeout=timeout,
        read_timeout=timeout,
        deadline_at=time.monotonic() + timeout,
        max_body=max_body,
        **kwargs,
    )


def ok(body: bytes = BODY, *fields: bytes, version: bytes = b"HTTP/1.1") -> bytes:
    head = [version + b" 200 OK", b"Content-Length: %d" % len(body), *fields]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def test_request_is_one_post_with_host_fields_and_length(scripted):
    server, poster = scripted([ok()])
    assert post(poster) == (200, BODY)
    port = server.url.split(":")[2].split("/")[0]
    assert server.requests == [
        b"POST /oauth/introspect HTTP/1.1\r\nHost: 127.0.0.1:" + port.encode() + b"\r\n"
        b"Accept: application/json\r\nX-Request-ID: r1\r\nContent-Length: 7\r\n\r\ntoken=t"
    ]


def test_keep_alive_connection_is_reused_until_the_server_says_close(scripted):
    server, poster = scripted([ok(), ok(), ok(BODY, b"Connection: close"), ok()])
    for _ in range(4):
        assert post(poster) == (200, BODY)
    assert server.connections == 2  # the third answer ended the first connection


def test_http_1_0_connection_is_reused_only_with_keep_alive(scripted):
    server, poster = scripted([ok(BODY, version=b"HTTP/1.0")] * 2)
    assert post(poster) == (200, BODY)
    assert post(poster) == (200, BODY)
    assert server.connections == 2
    server, poster = scripted([ok(BODY, b"Connection: keep-alive", version=b"HTTP/1.0")] * 2)
    assert post(poster) == (200, BODY)
    assert post(poster) == (200, BODY)
    assert server.connections == 1


def test_chunked_answer_with_extensions_and_trailers_is_joined(scripted):
    answer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\n" + BODY[:5] + b"\r\n"
        b"B\r\n" + BODY[5:] + b"\r\n"
        b"0\r\nExpires: never\r\n\r\n"
    )
    server, poster = scripted([answer, answer])
    assert post(poster) == (200, BODY)
    assert post(poster) == (200, BODY)
    assert server.connections == 1


def test_interim_1xx_answers_are_skipped(scripted):
    _, poster = scripted(
        [b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n" + ok()]
    )
    assert post(poster) == (200, BODY)


def test_body_without_framing_ends_with_the_connection(scripted):
    server, poster = scripted([b"HTTP/1.1 200 OK\r\n\r\n" + BODY], close_after=True)
    assert post(poster) == (200, BODY)
    assert post(poster) == (200, BODY)
    assert server.connections == 2


@pytest.mark.parametrize(
    "answer",
    [
        ok() + b"HTTP/1.1 200 OK",
        b"HTTP/1.1 200 OK\r\nContent-Length: 16\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"10\r\n" + BODY + b"\r\n0\r\n\r\n",
    ],
    ids=["bytes-past-the-answer", "length-and-chunked"],
)
def test_connection_out_of_step_or_ambiguous_is_not_reused(scripted, answer):
    server, poster = scripted([answer, ok()])
    assert post(poster) == (200, BODY)
    assert post(poster) == (200, BODY)
    assert server.connections == 2


def test_error_status_is_returned_without_its_body_and_closes(scripted):
    server, poster = scripted([b"HTTP/1.1 503 Busy\r\nContent-Length: 5\r\n\r\nbusy!", ok()])
    assert post(poster) == (503, b"")
    assert post(poster) == (200, BODY)
    assert server.connections == 2


@pytest.mark.parametrize(
    "answer",
    [
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"HTTP/1.1 \xb2\xb2\xb2 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1_6\r\n\r\n" + BODY,
        b"HTTP/1.1 200 OK\r\nContent-Length: 16\r\nContent-Length: 17\r\n\r\n" + BODY,
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1_0\r\n" + BODY + b"\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n" + BODY + b"XX0\r\n\r\n",
        b'HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n{"act',
    ],
)
def test_answer_that_is_not_http_or_ends_early_is_a_dropped_connection(scripted, answer):
    _, poster = scripted([answer], close_after=True)
    with pytest.raises(ConnectionDropped):
        post(poster)


@pytest.mark.parametrize(
    "answer",
    [
        ok(b" " * 1025),
        b"HTTP/1.1 200 OK\r\nContent-Length: " + b"9" * 30 + b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n401\r\n" + b" " * 1025 + b"\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n" + b" " * 1025,
    ],
    ids=["content-length", "huge-content-length", "chunked", "until-close"],
)
def test_body_over_the_limit_is_too_large(scripted, answer):
    _, poster = scripted([answer], close_after=True)
    with pytest.raises(ResponseTooLarge):
        post(poster)


def test_refused_connection_is_a_connect_failure():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    poster = KeepAlivePoster(f"http://127.0.0.1:{port}/x", {})
    with pytest.raises(ConnectFailed):
        post(poster)


def test_silent_server_times_out_at_the_deadline(scripted):
    _, poster = scripted([b""])
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        post(poster, timeout=0.3)
    assert time.monotonic() - started < 2


def test_idle_connection_closed_by_the_server_is_not_reused(scripted, monkeypatch):
    """A pooled connection unused for a while is checked first: one the server closed meanwhile
    is dropped, so the call goes out on a new connection instead of failing."""
    server, poster = scripted([ok()], close_after=True)
    assert post(poster) == (200, BODY)  # Content-Length framing: pooled, then closed by server
    time.sleep(0.1)
    monkeypatch.setattr("shared.guard.introspection_http.IDLE_CHECK_SECONDS", 0.0)
    assert post(poster) == (200, BODY)
    assert server.connections == 2


@pytest.mark.parametrize("value", ["a\r\nInjected: 1", "nul\x00", "line\nfeed"])
def test_header_value_with_line_breaks_is_refused(scripted, value):
    _, poster = scripted([ok()])
    with pytest.raises(ValueError):
        poster.post(
            b"t",
            {"X-Request-ID": value},
            connect_timeout=1,
            read_timeout=1,
            deadline_at=time.monotonic() + 1,
            max_body=10,
        )


def test_url_without_host_or_of_another_scheme_is_refused():
    for url in ("ftp://host/x", "http:///x"):
        with pytest.raises(ValueError):
            KeepAlivePoster(url, {})


def _self_signed(directory) -> tuple[str, str]:
    """A certificate for 127.0.0.1 (an IP SAN) and its key, as PEM files in ``directory``."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tessera test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


@pytest.fixture
def tls_server(tmp_path):
    """A ScriptedServer behind TLS with a self-signed certificate: (server, its CA file)."""
    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = ScriptedServer([ok()] * 10)
    plain_serve = server._serve

    def serve_tls(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            conn.settimeout(5)
            plain_serve(context.wrap_socket(conn, server_side=True))

    server._serve = serve_tls  # type: ignore[method-assign]
    yield server, cert
    server.stop()


def test_https_checks_the_certificate_against_the_given_ca_file(tls_server):
    server, ca_file = tls_server
    url = server.url.replace("http://", "https://")
    poster = KeepAlivePoster(url, {}, verify=ca_file)
    try:
        assert post(poster) == (200, BODY)
        assert post(poster) == (200, BODY)
        assert server.connections == 1  # the TLS connection was kept alive
    finally:
        poster.close()
    unchecked = KeepAlivePoster(url, {}, verify=False)
    try:
        assert post(unchecked) == (200, BODY)
    finally:
        unchecked.close()
    # certifi's public CAs never signed this certificate: no connection, no retry.
    with pytest.raises(ConnectFailed):
        post(KeepAlivePoster(url, {}))
