"""The introspection client's HTTP/1.1: one POST on a pooled keep-alive socket, nothing more.

Every protected request of the resource server makes this call, and through urllib3 and
http.client it was a third of the worker's busy time (py-spy under wrk on /api/me): connection
objects and Timeout clones per call, a poll of the socket before each reuse, headers parsed by
the email package, a buffered reader over the socket. A call here is one ``send`` of bytes built
from a prefix made once, then ``recv`` until the answer is whole, its head parsed for the three
fields that frame it (Content-Length, Transfer-Encoding, Connection).

Every read waits at most until the call's deadline (and the read timeout), so a peer that
trickles its answer cannot hold the caller past it. Redirects are not followed and nothing is
retried here: the caller decides (shared/guard/introspection.py). Sockets come from the
``socket`` and ``ssl`` modules as they are when a call is made, so under gunicorn's gevent worker
(which patches them) a call waiting on the network lets the worker serve other requests.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import time
from dataclasses import dataclass

import certifi
from urllib3.util import parse_url
from urllib3.util.wait import wait_for_read

# A pooled connection unused for this long is checked before reuse (is it closed at the other
# end?), as urllib3 does before every reuse; a busy pool's connections skip the check, and one
# closed under us anyway is retried by the caller.
IDLE_CHECK_SECONDS = 1.0
_MAX_HEAD_BYTES = 64 * 1024
_RECV_BYTES = 64 * 1024
# RFC 9110 §5.5: a field value has no CR, LF or NUL; http.client refused them as well.
_FIELD_VALUE = re.compile(r"[\x20-\x7e\x80-\xff]*")
# ASCII digits only: str.isdigit() also accepts "²", and int() accepts "1_0" and spaces.
_DIGITS = re.compile(r"[0-9]+")
_STATUS = re.compile(r"[0-9]{3}(?: |$)")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]+")


class ConnectFailed(OSError):
    """No connection could be opened (refused, unresolvable, TLS handshake failed): another
    attempt right away would fail the same way."""


class ConnectionDropped(OSError):
    """The connection broke or the answer was not HTTP/1.x: a keep-alive connection the server
    closed, most often, which one more attempt on a new connection gets past."""


class ResponseTooLarge(Exception):
    """The answer's body is longer than the limit; its connection was closed unread."""


@dataclass(slots=True)
class _Connection:
    sock: socket.socket
    buffer: bytearray
    last_used: float


class KeepAlivePoster:
    """POSTs to one URL over a pool of at most ``pool_size`` idle keep-alive connections; a call
    that finds none idle opens one (never waits), and one returned to a full pool is closed."""

    def __init__(
        self, url: str, headers: dict[str, str], pool_size: int = 10, verify: bool | str = True
    ) -> None:
        parts = parse_url(url)
        if parts.host is None or parts.scheme not in ("http", "https"):
            raise ValueError(f"not an http or https URL with a host: {url!r}")
        self.host = parts.host.strip("[]")  # an IPv6 literal, without its brackets
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self._tls: ssl.SSLContext | None = None
        if parts.scheme == "https":
            if verify is False:
                self._tls = ssl.create_default_context()
                self._tls.check_hostname = False
                self._tls.verify_mode = ssl.CERT_NONE
            else:
                ca_file = verify if isinstance(verify, str) else certifi.where()
                self._tls = ssl.create_default_context(cafile=ca_file)
        default_port = 443 if parts.scheme == "https" else 80
        host_field = parts.host if self.port == default_port else f"{parts.host}:{self.port}"
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._prefix = (
            f"POST {target} HTTP/1.1\r\nHost: {host_field}\r\n"
            + "".join(f"{_field(name)}: {_field(value)}\r\n" for name, value in headers.items())
        ).encode("latin-1")
        self.pool_size = pool_size
        self._idle: list[_Connection] = []
        self._closed = False

    def close(self) -> None:
        self._closed = True
        while (connection := self._take_idle()) is not None:
            _close(connection.sock)

    def _take_idle(self) -> _Connection | None:
        # pop() alone is atomic: another thread may take the last one between a check and it.
        try:
            return self._idle.pop()  # the most recently used: likeliest still open
        except IndexError:
            return None

    def post(
        self,
        body: bytes,
        extra_headers: dict[str, str],
        *,
        connect_timeout: float,
        read_timeout: float,
        deadline_at: float,
        max_body: int,
        fresh: bool = False,
    ) -> tuple[int, bytes]:
        """(status, body) of one POST; the body only for a 200 (at most ``max_body`` bytes,
        else ResponseTooLarge). ``fresh``: on a new connection, not a pooled one. Raises
        TimeoutError (a timeout or the deadline), ConnectFailed or ConnectionDropped."""
        request = bytearray(self._prefix)
        for name, value in extra_headers.items():
            request += f"{_field(name)}: {_field(value)}\r\n".encode("latin-1")
        request += b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
        connection = None if fresh else self._pooled()
        if connection is None:
            connection = self._connect(min(connect_timeout, _left(deadline_at)))
        keep = False
        try:
            sock = connection.sock
            sock.settimeout(min(connect_timeout, _left(deadline_at)))
            sock.sendall(request)
            status, body_out, keep = _read_response(connection, read_timeout, deadline_at, max_body)
            return status, body_out
        except (TimeoutError, ResponseTooLarge, ConnectionDropped):
            raise
        except OSError as exc:  # reset, broken pipe, TLS error on an open connection
            raise ConnectionDropped(f"{type(exc).__name__}: {exc}") from exc
        finally:
            if keep and not self._closed and len(self._idle) < self.pool_size:
                connection.last_used = time.monotonic()
                self._idle.append(connection)
            else:
                _close(connection.sock)

    def _pooled(self) -> _Connection | None:
        while (connection := self._take_idle()) is not None:
            if time.monotonic() - connection.last_used < IDLE_CHECK_SECONDS:
                return connection
            # Readable while idle: closed by the server (or sending what nobody asked for).
            if not wait_for_read(connection.sock, timeout=0.0):
                return connection
            _close(connection.sock)
        return None

    def _connect(self, timeout: float) -> _Connection:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
        except TimeoutError:
            raise
        except OSError as exc:
            raise ConnectFailed(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        try:
            # One small request, one small answer: never hold a segment back (as urllib3 does).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_hostname=self.host)
        except TimeoutError:
            _close(sock)
            raise
        except OSError as exc:
            _close(sock)
            raise ConnectFailed(f"TLS with {self.host}:{self.port} failed: {exc}") from exc
        return _Connection(sock, bytearray(), 0.0)


def _field(text: str) -> str:
    if not _FIELD_VALUE.fullmatch(text):
        raise ValueError(f"invalid HTTP header field: {text!r}")
    return text


def _left(deadline_at: float) -> float:
    left = deadline_at - time.monotonic()
    if left <= 0:
        raise TimeoutError("the deadline of this call has passed")
    return left


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()


def _receive(connection: _Connection, read_timeout: float, deadline_at: float) -> None:
    """Append what the peer sends next to the buffer; ConnectionDropped at its end."""
    sock = connection.sock
    sock.settimeout(min(read_timeout, _left(deadline_at)))
    chunk = sock.recv(_RECV_BYTES)
    if not chunk:
        raise ConnectionDropped("the server closed the connection before its answer ended")
    connection.buffer += chunk


def _read_response(
    connection: _Connection, read_timeout: float, deadline_at: float, max_body: int
) -> tuple[int, bytes, bool]:
    """(status, body, whether the connection may be reused) of the next answer on it."""
    buffer = connection.buffer
    while True:
        end = buffer.find(b"\r\n\r\n")
        while end < 0:
            if len(buffer) > _MAX_HEAD_BYTES:
                raise ConnectionDropped("the answer's head is too long")
            _receive(connection, read_timeout, deadline_at)
            end = buffer.find(b"\r\n\r\n")
        head = bytes(buffer[:end]).decode("latin-1")
        del buffer[: end + 4]
        status_line, _, fields_text = head.partition("\r\n")
        version, _, rest = status_line.partition(" ")
        if version not in ("HTTP/1.1", "HTTP/1.0") or not _STATUS.match(rest):
            raise ConnectionDropped(f"not an HTTP/1.x answer: {status_line[:40]!r}")
        status = int(rest[:3])
        # 1xx (100 Continue, 103 Early Hints) are interim: the answer follows (RFC 9110 §15.2).
        if not 100 <= status < 200 or status == 101:
            break
    fields: dict[str, str] = {}
    for line in fields_text.split("\r\n") if fields_text else ():
        name, colon, value = line.partition(":")
        if not colon:
            raise ConnectionDropped("a header line of the answer has no colon")
        name = name.strip().lower()
        if name in ("content-length", "transfer-encoding", "connection"):
            value = value.strip()
            if name != "content-length":
                fields[name] = f"{fields[name]}, {value}" if name in fields else value
            elif fields.setdefault(name, value) != value:
                raise ConnectionDropped("the answer has two different Content-Lengths")
    if status != 200:
        # Nothing in it is used: closing beats reading an error page of any size.
        return status, b"", False
    tokens = {item.strip().lower() for item in fields.get("connection", "").split(",")}
    keep = "close" not in tokens and (version == "HTTP/1.1" or "keep-alive" in tokens)
    codings = [item.strip().lower() for item in fields.get("transfer-encoding", "").split(",")]
    if codings[-1] == "chunked":
        # With a Content-Length too, the framing is ambiguous (RFC 9112 §6.3): not reused.
        keep = keep and "content-length" not in fields
        return status, _read_chunked(connection, read_timeout, deadline_at, max_body), keep
    if codings[-1]:
        keep = False  # a coding other than chunked last: the body ends when the connection does
        length = None
    else:
        declared = fields.get("content-length")
        if declared is not None and not _DIGITS.fullmatch(declared):
            raise ConnectionDropped("the answer's Content-Length is not a number")
        # More than 18 digits is more than any limit, and int() refuses over 4300 digits.
        length = None if declared is None else max_body + 1 if len(declared) > 18 else int(declared)
    if length is None:
        # No framing: the body is everything until the server closes the connection.
        try:
            while len(buffer) <= max_body:
                _receive(connection, read_timeout, deadline_at)
        except ConnectionDropped:
            return status, bytes(buffer), False
        raise ResponseTooLarge
    if length > max_body:
        raise ResponseTooLarge
    while len(buffer) < length:
        _receive(connection, read_timeout, deadline_at)
    body = bytes(buffer[:length])
    del buffer[:length]
    # Bytes past the answer were never asked for: the connection is out of step, drop it.
    return status, body, keep and not buffer


def _read_chunked(
    connection: _Connection, read_timeout: float, deadline_at: float, max_body: int
) -> bytes:
    """RFC 9112 §7.1: chunks of hex size (extensions ignored), a 0 chunk, trailers."""
    buffer = connection.buffer
    body = bytearray()
    while True:
        end = buffer.find(b"\r\n")
        while end < 0:
            if len(buffer) > 1024:
                raise ConnectionDropped("a chunk size line is too long")
            _receive(connection, read_timeout, deadline_at)
            end = buffer.find(b"\r\n")
        size_text = bytes(buffer[:end]).split(b";", 1)[0].rstrip(b" \t")
        del buffer[: end + 2]
        if not _CHUNK_SIZE.fullmatch(size_text):
            raise ConnectionDropped("a chunk size is not hexadecimal")
        size = int(size_text, 16)  # at most 1024 hex digits: the line's own limit
        if size == 0:
            break
        if len(body) + size > max_body:
            raise ResponseTooLarge
        while len(buffer) < size + 2:
            _receive(connection, read_timeout, deadline_at)
        if buffer[size : size + 2] != b"\r\n":
            raise ConnectionDropped("a chunk does not end with CRLF")
        body += buffer[:size]
        del buffer[: size + 2]
    # Trailer fields, if any, up to the empty line: read and ignored.
    while True:
        end = buffer.find(b"\r\n")
        while end < 0:
            if len(buffer) > _MAX_HEAD_BYTES:
                raise ConnectionDropped("the answer's trailers are too long")
            _receive(connection, read_timeout, deadline_at)
            end = buffer.find(b"\r\n")
        line = bytes(buffer[:end])
        del buffer[: end + 2]
        if not line:
            return bytes(body)
