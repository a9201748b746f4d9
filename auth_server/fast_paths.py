"""The authorization server's fast paths: its most common requests, answered below Flask.

Under our gunicorn settings Flask's request context, routing, form parsing, hooks and response
object cost about as much as a bare WSGI app does in all (docs/benchmarks.md): as much as a
whole introspection answered from memory, and about a third of the CPU of a client_credentials
token. So the two requests resource servers and machine clients send all day are answered by
WSGI middleware with the views' own code (auth_server/introspection_wsgi.py,
auth_server/client_credentials_wsgi.py), and every other request goes to Flask untouched.

Every fast path keeps the same rules:

- it answers only the common shape, told from the method, path, headers and a small
  `application/x-www-form-urlencoded` body (`small_form`); anything else, and anything its
  module says Flask must answer, reaches Flask with the body put back in `wsgi.input`;
- what it answers is what Flask answers, byte for byte: status, every header, body, metrics,
  audit rows and log lines (a test per fast path compares both request by request);
- it sits inside the proxy fix (REMOTE_ADDR is the client's, as Flask's request.remote_addr)
  and the request bookkeeping (shared/service/request_id.py: X-Request-ID, the request
  counted under the route it names here), and its log lines carry the request id as Flask's do.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any, ClassVar
from urllib.parse import unquote

from flask import Flask
from sqlalchemy.orm import Session

from auth_server.clients import ClientRecord
from auth_server.components import AuthComponents
from shared.service import request_id
from shared.service.metrics import ENDPOINT_KEY

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# What a fast path answers: the status line, the headers, the body.
Answer = tuple[str, list[tuple[str, str]], bytes]
FORM_TYPE = "application/x-www-form-urlencoded"
# Where create_app keeps the fast paths' dispatcher (ByPath), for the tests.
EXTENSION = "tessera_fast_paths"


class FastPath:
    """Answers `POST path` of the common shape (`_answer`), else hands the request to `app`."""

    path: ClassVar[str]
    # Where create_app keeps the fast path (app.extensions), for the tests.
    extension: ClassVar[str]
    # The longest body of the common shape.
    max_body: ClassVar[int]

    def __init__(
        self, app: WSGIApp, components: AuthComponents, dumps: Callable[[Any], str]
    ) -> None:
        self.app = app
        self._components = components
        # The app's JSON encoder (app.json.dumps), as the views answer with it.
        self._dumps = dumps
        # Flask answers 413 to a body over MAX_REQUEST_BYTES, which may be set lower.
        self._max_body = min(self.max_body, components.settings.max_request_bytes)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO") != self.path or environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        # Log lines written meanwhile (the audit event, a database failure) carry the id.
        logged_as = request_id.outside_flask.set(environ.get(request_id.ENVIRON_KEY))
        try:
            answer = self._answer(environ)
        finally:
            request_id.outside_flask.reset(logged_as)
        if answer is None:
            return self.app(environ, start_response)
        status, headers, body = answer
        # The request bookkeeping around this counts the answer under the route Flask matches.
        environ[ENDPOINT_KEY] = self.path
        start_response(status, headers)
        return [body]

    def _answer(self, environ: dict[str, Any]) -> Answer | None:
        raise NotImplementedError

    def _find_client(self, client_id: str, *, fresh: bool = False) -> ClientRecord | None:
        """The views' `components.clients.find(db.session, ...)`, on a session of its own made
        only when the worker's cached registration will not do."""
        directory = self._components.clients
        if not fresh:
            client = directory.cached(client_id)
            if client is not None:
                return client
        reader = self._components.reader
        if reader is None:
            return None
        with Session(reader) as session:
            return directory.find(session, client_id, fresh=fresh)


def install(app: Flask, components: AuthComponents, *fast_paths: type[FastPath]) -> None:
    """Put the fast paths in front of the app's WSGI app, each kept in app.extensions under its
    `extension` and handing what it does not answer to that WSGI app."""
    made = []
    for fast_path in fast_paths:
        made.append(fast_path(app.wsgi_app, components, app.json.dumps))
        app.extensions[fast_path.extension] = made[-1]
    app.wsgi_app = app.extensions[EXTENSION] = ByPath(app.wsgi_app, made)  # type: ignore[method-assign]


class ByPath:
    """Hands a request to the fast path of its path, any other straight to `app`: one lookup,
    where a layer per fast path cost every other request (a /healthz) a call and two environ
    reads each."""

    def __init__(self, app: WSGIApp, fast_paths: list[FastPath]) -> None:
        self.app = app
        self._fast_paths = {fast_path.path: fast_path for fast_path in fast_paths}
        if len(self._fast_paths) != len(fast_paths):
            raise ValueError("two fast paths for one path")

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        fast_path = self._fast_paths.get(environ.get("PATH_INFO"))  # type: ignore[arg-type]
        if fast_path is None:
            return self.app(environ, start_response)
        return fast_path(environ, start_response)


class SmallForm:
    """The parameters of a small form: each name's values in order, read as the views read
    Werkzeug's MultiDict (`form[name]` and `form.get(name)` the first, `getlist` all)."""

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, list[str]]) -> None:
        self._values = values

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __getitem__(self, name: str) -> str:
        return self._values[name][0]

    def get(self, name: str) -> str | None:
        values = self._values.get(name)
        return values[0] if values else None

    def getlist(self, name: str) -> list[str]:
        return list(self._values.get(name, ()))


def small_form(
    environ: dict[str, Any],
    parameters: frozenset[str],
    max_body: int,
    repeatable: frozenset[str] = frozenset(),
) -> SmallForm | None:
    """The form, if the request body is a urlencoded form of at most `max_body` bytes (with
    Content-Length, not chunked) holding only `parameters`, each once but the `repeatable`
    ones, none empty, in plain ASCII that percent-decodes to UTF-8; else None. Werkzeug reads
    such a form exactly so. The body is put back for Flask either way."""
    if environ.get("CONTENT_TYPE", "").lower() != FORM_TYPE:
        return None
    if environ.get("HTTP_TRANSFER_ENCODING"):
        return None
    declared = environ.get("CONTENT_LENGTH", "")
    # Digits alone: Werkzeug reads "+12" or "1_2" as no body at all.
    if not (declared.isascii() and declared.isdigit()):
        return None
    length = int(declared)
    if not 0 < length <= max_body:
        return None
    raw = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(raw)
    if len(raw) != length:
        return None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    values: dict[str, list[str]] = {}
    for pair in text.split("&"):
        # The name as sent, never decoded: `grant%5Ftype` is not the common shape.
        name, sep, encoded = pair.partition("=")
        if not sep or name not in parameters or (name in values and name not in repeatable):
            return None
        try:
            value = _unquote_plus(encoded)
        except UnicodeDecodeError:
            return None
        if not value:
            return None
        values.setdefault(name, []).append(value)
    return SmallForm(values)


def _unquote_plus(encoded: str) -> str:
    """What urllib.parse.parse_qsl (Werkzeug's form parser) makes of a value, but failing on
    percent-escapes that are not UTF-8 (Werkzeug replaces those)."""
    return unquote(encoded.replace("+", " "), errors="strict")
