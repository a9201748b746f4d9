"""The common introspection, answered below Flask.

Nearly every introspection has one shape: a resource server POSTs `token=...` (perhaps with
`token_type_hint`) as a form, authenticated with client_secret_basic, about a token it asked
about a moment ago. Flask's request context, routing, hooks and response object cost about as
much as the whole answer does (a bare Flask app costs twice a bare WSGI app under our gunicorn,
docs/benchmarks.md), so this middleware answers exactly that shape itself, with the same code
that the view uses (auth_server/protocol/introspection.py) and the same bytes out: status,
headers, body, metrics (the request bookkeeping around it adds X-Request-ID and counts the
request, shared/service/request_id.py). Anything else, and anything that would take a
write or an error answer, goes to Flask untouched, which answers it as before:

- another path or method, another content type, a body that is not a small plain form;
- a parameter other than `token` and `token_type_hint`, a repeated or empty one;
- no Basic credentials, an unknown or disabled client, a secret the cached registration does not
  accept (Flask re-reads the registration: it may have been rotated), a client that may not
  introspect;
- a database error (Flask retries and answers 503);
- an active token whose login is due an activity write (sliding expiration).

tests/auth_server/test_introspection_wsgi.py compares the two answers request by request.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

from authlib.consts import default_json_headers
from sqlalchemy.orm import Session

from auth_server import activity
from auth_server.clients import ClientRecord
from auth_server.components import AuthComponents
from auth_server.protocol.introspection import (
    MAX_TOKEN_LENGTH,
    introspection_payload,
    look_up_access_token,
)
from shared.protocol.basic_auth import parse_basic_credentials
from shared.service.metrics import ENDPOINT_KEY

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

PATH = "/oauth/introspect"
# Where create_app keeps the app's fast path (app.extensions).
FAST_PATH = "tessera_introspection_fast_path"
FORM_TYPE = "application/x-www-form-urlencoded"
PARAMETERS = frozenset({"token", "token_type_hint"})
# A token at its longest, its name, a hint: anything longer is not the common shape.
MAX_BODY = MAX_TOKEN_LENGTH + 256
_HEADERS = [(name, value) for name, value in default_json_headers]


class IntrospectionFastPath:
    def __init__(
        self, app: WSGIApp, components: AuthComponents, dumps: Callable[[Any], str]
    ) -> None:
        self.app = app
        self._components = components
        self._dumps = dumps
        counter = components.metrics.introspections
        self._introspections = {result: counter.labels(result) for result in ("active", "inactive")}
        self._sessions = (
            (lambda: Session(components.reader)) if components.reader is not None else None
        )

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        answer = self._answer(environ)
        if answer is None:
            return self.app(environ, start_response)
        payload, active = answer
        body = self._dumps(payload).encode()
        # The request bookkeeping around this adds X-Request-ID and counts the answer under
        # the route Flask would have matched.
        environ[ENDPOINT_KEY] = PATH
        start_response("200 OK", [*_HEADERS, ("Content-Length", str(len(body)))])
        self._introspections["active" if active else "inactive"].inc()
        return [body]

    def _answer(self, environ: dict[str, Any]) -> tuple[dict, bool] | None:
        form = _small_plain_form(environ)
        if form is None:
            return None
        client = self._client(environ.get("HTTP_AUTHORIZATION"))
        if client is None:
            return None
        components = self._components
        if components.reader is None:
            return None
        try:
            record = look_up_access_token(
                components.reader, form["token"], components.introspection_memory
            )
        except Exception:  # noqa: BLE001 - Flask's path retries, and answers 503 if it must
            return None
        now = components.now()
        payload = introspection_payload(
            record, client.audience_list, now, components.settings.auth_issuer
        )
        active = payload["active"]
        if (
            active
            and record is not None
            and record.family_id is not None
            and activity.activity_is_due(
                record.family_last_active_at, now, components.settings.refresh_activity_interval
            )
        ):
            return None
        return payload, active

    def _client(self, authorization: str | None) -> ClientRecord | None:
        client_id, secret = parse_basic_credentials(authorization)
        if not client_id or secret is None:
            return None
        directory = self._components.clients
        client = directory.cached(client_id)
        if client is None:
            if self._sessions is None:
                return None
            try:
                with self._sessions() as session:
                    client = directory.find(session, client_id)
            except Exception:  # noqa: BLE001 - Flask's path reads it again and answers
                return None
        if client is None or not client.can_introspect:
            return None
        if not client.check_endpoint_auth_method("client_secret_basic", "introspection"):
            return None
        if not client.check_client_secret(secret):
            return None
        return client


def _small_plain_form(environ: dict[str, Any]) -> dict[str, str] | None:
    """The form, if the request body is a small urlencoded form of the expected parameters,
    each once and not empty; the body is put back for Flask either way."""
    if environ.get("CONTENT_TYPE", "").lower() != FORM_TYPE:
        return None
    if environ.get("HTTP_TRANSFER_ENCODING"):
        return None
    try:
        length = int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None
    if not 0 < length <= MAX_BODY:
        return None
    stream = environ["wsgi.input"]
    raw = stream.read(length)
    environ["wsgi.input"] = io.BytesIO(raw)
    if len(raw) != length:
        return None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    form: dict[str, str] = {}
    for pair in text.split("&"):
        name, sep, _ = pair.partition("=")
        if not sep or name not in PARAMETERS or name in form:
            return None
        try:
            decoded = parse_qsl(pair, keep_blank_values=True, errors="strict")
        except UnicodeDecodeError:
            return None
        if len(decoded) != 1 or not decoded[0][1]:
            return None
        form[name] = decoded[0][1]
    if "token" not in form:
        return None
    return form
