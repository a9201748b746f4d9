"""Structured logs: one JSON object per line on stderr, with the request id when there is one.

Nothing here ever formats a token, secret or password: call sites log `jti`s and fingerprints.
"""

from __future__ import annotations

import _thread
import io
import json
import logging
import sys
import time
from typing import Any

from flask import has_request_context, request

from shared.service.request_id import ENVIRON_KEY, outside_flask

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
# json.dumps(entry, default=str), without making a new encoder for every line.
_ENCODER = json.JSONEncoder(default=str)
# ".000Z" to ".999Z": a line's milliseconds, without formatting a number per line.
_MILLISECONDS = [f".{msecs:03d}Z" for msecs in range(1000)]


class JsonFormatter(logging.Formatter):
    # strftime once per second, not per line: the request log writes one line per request.
    _second: int | None = None
    _second_text = ""

    def _timestamp(self, created: float, msecs: float) -> str:
        second = int(created)
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return self._second_text + _MILLISECONDS[int(msecs)]

    def format(self, record: logging.LogRecord) -> str:
        fields = record.__dict__
        entry = self._entry(
            record.created,
            record.msecs,
            record.levelname,
            record.name,
            record.getMessage(),
            fields.get("request_id"),
        )
        for key in [k for k in fields if k not in _RESERVED and not k.startswith("_")]:
            entry[key] = fields[key]
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return _ENCODER.encode(entry)

    def timestamp(self, created: float) -> str:
        """The `ts` of a record made at `created` (time.time()): _timestamp, with the record's
        msecs computed as LogRecord computes them."""
        second = int(created)
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return self._second_text + _MILLISECONDS[int((created - second) * 1000)]

    def _entry(
        self,
        created: float,
        msecs: float,
        level: str,
        logger: str,
        msg: str,
        request_id: str | None,
    ) -> dict[str, Any]:
        entry = {
            "ts": self._timestamp(created, msecs),
            "level": level,
            "logger": logger,
            "msg": msg,
        }
        request_id = request_id or served_request_id()
        if request_id:
            entry["request_id"] = request_id
        return entry


def sole_json_handler(logger: logging.Logger) -> logging.StreamHandler[Any] | None:
    """The handler that alone would see `logger`'s INFO records, if it is the service's own JSON
    handler (configure_logging) and nothing else (no other handler, filter, or record factory)
    would see or change them; else None. `logger` must be a direct child of `tessera`."""
    parent = logger.parent
    if (
        logger.handlers
        or logger.filters
        or logger.disabled
        or not logger.propagate
        or parent is None
        or parent.name != "tessera"
        or parent.filters
        or parent.propagate
        or len(parent.handlers) != 1
        # logging.getLogRecordFactory(), without the call
        or logging._logRecordFactory is not logging.LogRecord  # type: ignore[attr-defined]
    ):
        return None
    handler = parent.handlers[0]
    if (
        not getattr(handler, "_tessera", False)
        or handler.lock is None
        or handler.filters
        or handler.level > logging.INFO
        or type(handler.formatter) is not JsonFormatter
    ):
        return None
    return handler  # type: ignore[return-value]  # configure_logging made it: a StreamHandler


def write_line(handler: logging.StreamHandler[Any], line: str, logger: str, msg: str) -> None:
    """Write `line`, an INFO record of `logger` already formatted as `handler` formats it (see
    sole_json_handler), to the handler's stream as emit() would, but without the record and the
    logging tree: for a line per request, that machinery cost more than the rest of a /healthz
    answer. Should the write fail, handleError reports a record with the message `msg`."""
    # The handler's lock itself, not its acquire() and release(): two Python calls.
    with handler.lock:  # type: ignore[union-attr]  # configure_logging's RLock
        try:
            stream = handler.stream
            stream.write(line)
            # What handler.flush() does, without taking the lock a second time, unless the
            # stream's write() has already passed the line to the file (_flushes_itself).
            if stream is not _unflushed_stream[0]:
                _unflushed_stream[:] = [stream, _flushes_itself(stream)]
            if not (_unflushed_stream[1] and line.endswith("\n")):
                stream.flush()
        except RecursionError:
            raise
        except Exception:
            # What StreamHandler.emit does on a failed write; only then is a record needed.
            record = logging.makeLogRecord({"name": logger, "msg": msg, "levelno": logging.INFO})
            handler.handleError(record)


# The stream write_line last wrote to, and whether it passes a whole line on by itself.
_unflushed_stream: list[Any] = [None, False]


def _flushes_itself(stream: Any) -> bool:
    """Whether `stream` passes a line ending in a newline to its file in write(): what Python
    makes sys.stderr, a text stream either line-buffered (its write() flushes its buffer after a
    newline) or, under PYTHONUNBUFFERED, writing through to the file itself."""
    if not isinstance(stream, io.TextIOWrapper):
        return False
    return stream.line_buffering or (stream.write_through and isinstance(stream.buffer, io.FileIO))


def served_request_id() -> str | None:
    """The id of the Flask request being served here, if any: what a line written now carries."""
    if has_request_context():
        request_id: str | None = request.environ.get(ENVIRON_KEY)
        return request_id
    return outside_flask.get()


def configure_logging(level: str, fmt: str) -> None:
    """Set up the `tessera` logger tree once per process (idempotent across app factories)."""
    logger = logging.getLogger("tessera")
    logger.setLevel(level.upper())
    logger.propagate = False
    handler = next((h for h in logger.handlers if getattr(h, "_tessera", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler._tessera = True  # type: ignore[attr-defined]
        # The interpreter's own RLock, also where gevent has patched threading (its RLock is
        # Python code over a greenlet lock: a fifth of the request log line). The lock has to
        # keep OS threads apart, and this one does; greenlets of one thread never meet inside
        # emit(), whose write to stderr does not yield to the event loop (gevent leaves sys's
        # streams alone), and if one ever did they would share the lock, not deadlock on it.
        handler.lock = _thread.RLock()
        logger.addHandler(handler)
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
