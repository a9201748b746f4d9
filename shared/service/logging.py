"""Structured logs: one JSON object per line on stderr, with the request id when there is one.

Nothing here ever formats a token, secret or password: call sites log `jti`s and fingerprints.
"""

from __future__ import annotations

import json
import logging
import sys
import time

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
# json.dumps(entry, default=str), without making a new encoder for every line.
_ENCODER = json.JSONEncoder(default=str)


class JsonFormatter(logging.Formatter):
    # strftime once per second, not per line: the request log writes one line per request.
    _second: int | None = None
    _second_text = ""

    def _timestamp(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._second_text}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self._timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = record.__dict__
        request_id = fields.get("request_id") or _current_request_id()
        if request_id:
            entry["request_id"] = request_id
        for key in [k for k in fields if k not in _RESERVED and not k.startswith("_")]:
            entry[key] = fields[key]
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return _ENCODER.encode(entry)


def _current_request_id() -> str | None:
    try:
        from flask import has_request_context, request

        from shared.service.request_id import ENVIRON_KEY

        if has_request_context():
            request_id: str | None = request.environ.get(ENVIRON_KEY)
            return request_id
    except ImportError:  # pragma: no cover - flask is a dependency of both services
        return None
    return None


def configure_logging(level: str, fmt: str) -> None:
    """Set up the `tessera` logger tree once per process (idempotent across app factories)."""
    logger = logging.getLogger("tessera")
    logger.setLevel(level.upper())
    logger.propagate = False
    handler = next((h for h in logger.handlers if getattr(h, "_tessera", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler._tessera = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
