"""X-Request-ID: one id per request, taken from the caller when it is safe, echoed back, put in
every log line (shared/service/logging.py) and forwarded by the resource server to the authorization
server, so one user request can be followed across both services.

What every request needs is done in one WSGI wrapper around Flask (`RequestBookkeeping`), not
in Flask before/after-request hooks: the id is chosen and echoed there, the route Flask matched
is noted there, and the request is counted and timed there (shared/service/metrics.py). Each
hook cost a few microseconds of Flask machinery per request (the ensure_sync check, the `g` and
`request` proxies, building the response headers again), which a /healthz answer in about
100 us of Python could not afford.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from os import register_at_fork, urandom
from time import perf_counter
from typing import Any

from flask import Flask, request

HEADER = "X-Request-ID"
# Where the request's id lives while it is served: the WSGI environ, which Flask's `request`
# shares (request.environ), so code outside Flask (the request log) can read it too.
ENVIRON_KEY = "tessera.request_id"
EXTENSION_KEY = "tessera_request_bookkeeping"
# The id of the request a WSGI app below the bookkeeping but outside Flask is answering (the
# authorization server's fast paths, auth_server/fast_paths.py), for its log lines: without a
# request context, `request.environ` cannot give it to them.
outside_flask: ContextVar[str | None] = ContextVar("tessera_request_id", default=None)
# The route template of the rule Flask matched for the request ("unmatched" for none), or what
# an answer made below Flask puts there itself: what the metrics count a request by.
ENDPOINT_KEY = "tessera.endpoint"
# Where werkzeug links the request being served from its environ; Flask unlinks it when the
# request's context ends, after the answer has started.
_SERVED_REQUEST = "werkzeug.request"
_NOT_FLASK = object()
# What we accept from a caller: short and safe to put in logs and a header as is.
_safe = re.compile(r"[A-Za-z0-9._-]{1,64}").fullmatch
# The bits uuid.UUID(..., version=4) keeps from its random input: all but the version nibble and
# the two variant bits, which it sets.
_RANDOM_BITS = ((1 << 128) - 1) & ~((0xF000 << 64) | (0xC000 << 48))
_VERSION_4_AND_VARIANT = (0x4000 << 64) | (0x8000 << 48)
_from_bytes = int.from_bytes

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# Told of every answer Flask made: (environ, the status's three digits, seconds spent)
Observer = Callable[[dict[str, Any], str, float], None]


def init_app(app: Flask) -> RequestBookkeeping:
    """Wrap `app.wsgi_app` in the request bookkeeping, once per app; later calls return it."""
    existing: RequestBookkeeping | None = app.extensions.get(EXTENSION_KEY)
    if existing is None:
        existing = app.extensions[EXTENSION_KEY] = RequestBookkeeping(app.wsgi_app)
        app.wsgi_app = existing  # type: ignore[method-assign]
    return existing


class RequestBookkeeping:
    """Gives each request its id (`ENVIRON_KEY`), echoes it in X-Request-ID on every answer
    (errors and CORS preflights included), puts the service's fixed headers on every answer
    (`put_on_every_answer`), and tells `observer` (the metrics) of the answer."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app
        self.observer: Observer | None = None
        self._fixed: tuple[tuple[str, str], ...] = ()
        self._fixed_names: frozenset[str] = frozenset()

    def put_on_every_answer(self, headers: Mapping[str, str]) -> None:
        """Every answer carries `headers`, in place of any the app set under those names
        (whatever view, error handler or hook made it). Set here rather than by a Flask
        after-request hook: Headers.update on every response cost five times as much."""
        self._fixed = tuple(headers.items())
        self._fixed_names = frozenset(name.lower() for name in headers)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        started = perf_counter()
        value = environ[ENVIRON_KEY] = _choose(environ)
        echoed = (HEADER, value)
        fixed, fixed_names = self._fixed, self._fixed_names
        answered: str | None = None  # the status line, once the app has started its answer

        def echoing_start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            nonlocal answered
            # Flask starts its answer inside the request's context: the request is still there.
            # A plain werkzeug Request (a test client's, say) has no url_rule: not Flask's answer.
            rule: Any = getattr(environ.get(_SERVED_REQUEST), "url_rule", _NOT_FLASK)
            if rule is not _NOT_FLASK:
                environ[ENDPOINT_KEY] = rule.rule if rule is not None else "unmatched"
            if fixed:
                for name, _ in headers:
                    if name.lower() in fixed_names:
                        headers[:] = [h for h in headers if h[0].lower() not in fixed_names]
                        break
                headers.extend(fixed)
            headers.append(echoed)
            answered = status
            # Every WSGI server takes exc_info (PEP 3333), None or not.
            return start_response(status, headers, exc_info)

        result = self.app(environ, echoing_start_response)
        observer = self.observer
        if observer is not None and answered is not None:
            observer(environ, answered[:3], perf_counter() - started)
        return result


def current_request_id() -> str:
    """This request's id (assigned on first use when no bookkeeping ran, e.g. in a bare test
    app: then it is not echoed)."""
    environ = request.environ
    value: str | None = environ.get(ENVIRON_KEY)
    if value is None:
        value = environ[ENVIRON_KEY] = _choose(environ)
    return value


def is_safe_request_id(value: str) -> bool:
    return _safe(value) is not None


def _choose(environ: dict[str, Any]) -> str:
    incoming = environ.get("HTTP_X_REQUEST_ID")
    return incoming if incoming and _safe(incoming) is not None else new_request_id()


def new_request_id() -> str:
    """uuid.uuid4().hex, without making the UUID object: 122 random bits, with the version (4)
    and variant (RFC 9562) bits set as uuid4 sets them. Made _IDS_AT_ONCE at a time from one
    read of the kernel's random bytes, not a system call per request."""
    value = next(_unused_ids, None)  # a list's iterator: no two callers get the same id
    return _new_request_ids() if value is None else value


def _new_request_ids() -> str:
    """One new id, and the next _IDS_AT_ONCE - 1 for later."""
    global _unused_ids
    random = urandom(16 * _IDS_AT_ONCE)
    ids = [
        "%032x" % (_from_bytes(random[at : at + 16]) & _RANDOM_BITS | _VERSION_4_AND_VARIANT)
        for at in range(0, len(random), 16)
    ]
    _unused_ids = iter(ids[1:])
    return ids[0]


def _forget_unused_ids() -> None:
    """In a forked child (a gunicorn worker): the parent's unused ids are the parent's."""
    global _unused_ids
    _unused_ids = iter(())


_IDS_AT_ONCE = 64
_unused_ids: Iterator[str] = iter(())
register_at_fork(after_in_child=_forget_unused_ids)
