"""What each gunicorn worker puts between its connections and the app (gunicorn.conf.py).

The gevent worker gives every connection a greenlet, so a client that trickles its request
costs one greenlet and holds nobody up. Left at that, though, a worker would also run as many
requests inside the app at once as clients send: 50 concurrent token requests on one worker
would want 50 database connections from a pool of 15, and a request that needs a second
connection while others hold the rest waits out DB_POOL_TIMEOUT (503). So the app gets a
fixed number of slots per worker, as gthread's threads gave it, and a request takes one only
once its whole body has arrived: reading a slow body, or writing the response to a slow
reader, happens outside the slots.

It also writes the request log: one line per request on the `tessera.request` logger (method,
path without the query string, status, duration, request id), in the service's LOG_FORMAT.
gunicorn's own access log (off unless GUNICORN_ACCESS_LOG=1) cost more for the same facts.
"""

from __future__ import annotations

import collections
import io
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable
from time import perf_counter, time
from typing import Any

from shared.service.logging import (
    _MILLISECONDS,
    JsonFormatter,
    served_request_id,
    sole_json_handler,
    write_line,
)
from shared.service.request_id import ENVIRON_KEY

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

request_log = logging.getLogger("tessera.request")
_REQUEST_LINE = "%s %s %s %sms rid=%s"


class BufferedApp:
    """`app` behind `slots` concurrent requests, each admitted with its body already read."""

    def __init__(self, app: WSGIApp, *, slots: int, max_body: int) -> None:
        self.app = app
        self.max_body = max_body
        self._slots = FairSlots(slots)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        started = perf_counter()
        answer: list[Any] = ["500", None]  # status, request id: what start_response was given

        def recording_start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            answer[0] = status[:3]
            # The request bookkeeping (shared/service/request_id.py) puts its header last.
            last = headers[-1] if headers else ("", "")
            answer[1] = (
                last[1]
                if last[0] == "X-Request-ID"
                else next((v for k, v in headers if k == "X-Request-ID"), None)
            )
            if exc_info is None:
                return start_response(status, headers)
            return start_response(status, headers, exc_info)

        self._read_body(environ)
        try:
            with self._slots:
                result = self.app(environ, recording_start_response)
                try:
                    # The services answer with small JSON or HTML pages, never a stream: the
                    # body is collected in the slot and written after it.
                    return list(result)
                finally:
                    close = getattr(result, "close", None)
                    if close is not None:
                        close()
        finally:
            if request_log.isEnabledFor(logging.INFO):
                _log_request(environ, answer[0], answer[1], perf_counter() - started)

    def _read_body(self, environ: dict[str, Any]) -> None:
        length = environ.get("CONTENT_LENGTH")
        if length:
            try:
                expected = int(length)
            except ValueError:
                return  # the app answers 400
            if expected > self.max_body:
                return  # the app answers 413 from the header alone, without reading
        elif environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
            # Read one byte past the limit at most: the app then answers 413 itself.
            expected = self.max_body + 1
        else:
            return
        body = _read_up_to(environ["wsgi.input"], expected)
        # Short if the client went away mid-body: the app sees the same short stream (400).
        environ["wsgi.input"] = io.BytesIO(body)


class FairSlots:
    """A counting semaphore that hands a freed slot to the request that has waited longest.

    gevent's semaphores (and threading's, patched or not) let a newcomer take a slot freed
    between a release and the wake-up of the request waiting for it, so under load a few
    requests kept losing that race: with 4 slots, 16 connections and an introspection round
    trip held in each slot, the resource server's p99 was 4-10x its p50 (docs/benchmarks.md).
    Here a release passes the slot directly to the first waiter, and a newcomer queues
    behind anyone already waiting. gevent-aware once the worker has monkey-patched
    threading (before it loads the app).
    """

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError("slots must be at least 1")
        self._free = slots
        self._waiters: collections.deque[threading.Event] = collections.deque()
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        with self._lock:
            if self._free and not self._waiters:
                self._free -= 1
                return
            turn = threading.Event()
            self._waiters.append(turn)
        turn.wait()  # set by __exit__, which hands its slot over without freeing it

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            if self._waiters:
                self._waiters.popleft().set()
            else:
                self._free += 1


def _log_request(
    environ: dict[str, Any], status: str, request_id: str | None, seconds: float
) -> None:
    # PATH_INFO only: a query string can carry a token (RFC 6750 §2.3) and is never logged.
    method = environ.get("REQUEST_METHOD", "")
    path = environ.get("PATH_INFO", "")
    # Milliseconds to two decimals, counted in hundredths: round(seconds * 1000, 2) and the
    # float's repr each went through the float-to-decimal conversion, a tenth of the line.
    hundredths = round(seconds * 100_000)
    handler = sole_json_handler(request_log)
    if handler is not None:
        _write_json_line(
            handler, method, path, status, hundredths, request_id, environ.get(ENVIRON_KEY)
        )
        return
    duration_ms = hundredths / 100
    args = (method, path, status, duration_ms, request_id)
    extra = {
        "method": method,
        "path": path,
        "status": int(status) if status.isdigit() else status,
        "duration_ms": duration_ms,
        "request_id": request_id,
    }
    # makeRecord + handle, not info(): info() also walks the stack for the caller's file and
    # line, which a line per request does not need and which cost a fifth of the line.
    record = request_log.makeRecord(
        request_log.name, logging.INFO, __file__, 0, _REQUEST_LINE, args, None, extra=extra
    )
    request_log.handle(record)


# The line JsonFormatter writes for the record above, field for field and in its order (its
# own fields, then the record's extra ones), made as one format: only the values change from
# line to line, and json.dumps of the whole dict was a quarter of a /healthz answer. Strings
# are escaped as its encoder escapes them (ensure_ascii); numbers written as it writes them.
_escape = json.encoder.encode_basestring_ascii
_LINE_HEAD = '{"ts": "%s", "level": "INFO", "logger": ' + _escape(request_log.name) + ', "msg": %s'
_LINE_WITH_ID = (
    _LINE_HEAD + ', "request_id": %s, "method": %s, "path": %s, "status": %s, "duration_ms": %s}'
)
# The milliseconds of a duration after the point, by hundredths: what repr() writes for a float
# with at most two decimals (".5" for 50 hundredths, ".0" for none).
_HUNDREDTHS = [f".{n // 10}" if n % 10 == 0 else f".{n:02d}" for n in range(100)]
# Below this many hundredths (10**13 ms) a float with two decimals is written with exactly
# those (its neighbours lie closer than 0.01 apart), as _duration_text writes it.
_REPR_FIXED_BELOW = 10**15
# A falsy request id is not among the formatter's own fields: it comes last, with the extra ones.
_LINE_WITHOUT_ID = (
    _LINE_HEAD + ', "method": %s, "path": %s, "status": %s, "duration_ms": %s, "request_id": %s}'
)
# The second of the last line written and its text (JsonFormatter.timestamp's, to the second).
_second: tuple[int | None, str] = (None, "")
# The line's format for one method, path and status, with the rest left to fill in (time,
# duration, request id): what changes from one request to the next. By (method, path, status);
# a client can send any path, so the table is emptied when it fills up.
_line_formats: dict[tuple[str, str, str], tuple[str, ...]] = {}
_LINE_FORMATS_KEPT = 512


def _line_format(method: str, path: str, status: str) -> str:
    method_json, path_json, status_text = _escape(method), _escape(path), _escape(status)
    status_json = str(int(status)) if status.isdigit() else status_text
    # The message (_REQUEST_LINE), escaped: escaping goes character by character, so the
    # escaped parts make the escaped whole; the duration and the request id are filled in.
    method_text, path_text = _text(method_json[1:-1]), _text(path_json[1:-1])
    msg = f'"{method_text} {path_text} {_text(status_text[1:-1])} %sms rid=%s"'
    return _LINE_WITH_ID % (
        "%s",
        msg,
        '"%s"',  # the request id, escaped: the same text as in the message
        _text(method_json),
        _text(path_json),
        _text(status_json),
        "%s",
    )


def _text(known: str) -> str:
    """`known` as text in a % format."""
    return known.replace("%", "%%")


def _write_json_line(
    handler: logging.StreamHandler[Any],
    method: str,
    path: str,
    status: str,
    hundredths: int,
    request_id: str | None,
    environ_id: str | None = None,
) -> None:
    # formatter.timestamp(time()) and _duration_text(hundredths), without the two calls.
    global _second
    now = time()
    second = int(now)
    known = _second  # read once: another thread may replace it meanwhile
    if second != known[0]:
        formatter: JsonFormatter = handler.formatter  # type: ignore[assignment]  # sole_json_handler
        known = _second = (second, formatter.timestamp(second)[:-5])  # without ".000Z"
    ts = known[1] + _MILLISECONDS[int((now - second) * 1000)]
    if 0 <= hundredths < _REPR_FIXED_BELOW:
        duration = str(hundredths // 100) + _HUNDREDTHS[hundredths % 100]
    else:
        duration = repr(hundredths / 100)
    if request_id:
        key = (method, path, status)
        parts = _line_formats.get(key)
        if parts is None:
            if len(_line_formats) >= _LINE_FORMATS_KEPT:
                _line_formats.clear()
            parts = _line_formats[key] = _format_parts(_line_format(method, path, status))
        # The bookkeeping's own id (the caller's when safe, else a new one: shared/service/
        # request_id.py) has nothing JSON escapes; any other is escaped.
        id_text = request_id if request_id is environ_id else _escape(request_id)[1:-1]
        head, after_ts, after_duration, after_id, after_id_field, tail = parts
        # One join of the known parts and the values: a third of the time of the % format.
        line = "".join(
            (
                head,
                ts,
                after_ts,
                duration,
                after_duration,
                id_text,
                after_id,
                id_text,
                after_id_field,
                duration,
                tail,
                handler.terminator,
            )
        )
    else:
        line = _line_without_request_id(ts, method, path, status, duration, request_id)
        line += handler.terminator
    write_line(handler, line, request_log.name, line)


def _format_parts(line_format: str) -> tuple[str, ...]:
    """The text between the placeholders of `line_format` (a % format with %s and %%)."""
    parts: list[str] = []
    current: list[str] = []
    for piece in re.split("(%%|%s)", line_format):
        if piece == "%s":
            parts.append("".join(current))
            current = []
        else:
            current.append("%" if piece == "%%" else piece)
    parts.append("".join(current))
    return tuple(parts)


def _duration_text(hundredths: int) -> str:
    """repr(hundredths / 100), the duration in milliseconds as %s and the encoder write it."""
    if 0 <= hundredths < _REPR_FIXED_BELOW:
        return str(hundredths // 100) + _HUNDREDTHS[hundredths % 100]
    return repr(hundredths / 100)


def _line_without_request_id(
    ts: str, method: str, path: str, status: str, duration: str, request_id: str | None
) -> str:
    msg = f"{method} {path} {status} {duration}ms rid={request_id}"  # _REQUEST_LINE % args
    status_json = str(int(status)) if status.isdigit() else _escape(status)
    id_json = "null" if request_id is None else _escape(request_id)
    if served_request_id():  # the formatter takes the served request's place for it
        return _LINE_WITH_ID % (
            ts,
            _escape(msg),
            id_json,
            _escape(method),
            _escape(path),
            status_json,
            duration,
        )
    return _LINE_WITHOUT_ID % (
        ts,
        _escape(msg),
        _escape(method),
        _escape(path),
        status_json,
        duration,
        id_json,
    )


def _read_up_to(stream: Any, size: int) -> bytes:
    parts, remaining = [], size
    while remaining > 0:
        chunk = stream.read(min(remaining, 64 * 1024))
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)
