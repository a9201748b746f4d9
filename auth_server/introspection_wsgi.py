"""The common introspection, answered below Flask (auth_server/fast_paths.py says why).

Nearly every introspection has one shape: a resource server POSTs `token=...` (perhaps with
`token_type_hint`) as a form, authenticated with client_secret_basic, about a token it asked
about a moment ago. Flask's request context, routing, hooks and response object cost about as
much as the whole answer does, so this middleware answers exactly that shape itself, with the
same code that the view uses (auth_server/protocol/introspection.py) and the same bytes out.
Anything else, and anything that would take a write or an error answer, goes to Flask
untouched, which answers it as before:

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

from collections.abc import Callable
from typing import Any

from authlib.consts import default_json_headers

from auth_server import activity
from auth_server.clients import ClientRecord
from auth_server.components import AuthComponents
from auth_server.fast_paths import Answer, FastPath, WSGIApp, small_form
from auth_server.protocol.introspection import (
    MAX_TOKEN_LENGTH,
    introspection_payload,
    look_up_access_token,
)
from shared.protocol.basic_auth import parse_basic_credentials

PATH = "/oauth/introspect"
# Where create_app keeps the app's fast path (app.extensions).
FAST_PATH = "tessera_introspection_fast_path"
PARAMETERS = frozenset({"token", "token_type_hint"})
# A token at its longest, its name, a hint: anything longer is not the common shape.
MAX_BODY = MAX_TOKEN_LENGTH + 256
_HEADERS = [(name, value) for name, value in default_json_headers]


class IntrospectionFastPath(FastPath):
    path = PATH
    extension = FAST_PATH
    max_body = MAX_BODY

    def __init__(
        self, app: WSGIApp, components: AuthComponents, dumps: Callable[[Any], str]
    ) -> None:
        super().__init__(app, components, dumps)
        counter = components.metrics.introspections
        self._introspections = {result: counter.labels(result) for result in ("active", "inactive")}

    def _answer(self, environ: dict[str, Any]) -> Answer | None:
        form = small_form(environ, PARAMETERS, self._max_body)
        if form is None or "token" not in form:
            return None
        client = self._client(environ.get("HTTP_AUTHORIZATION"))
        if client is None:
            return None
        components = self._components
        if components.reader is None:
            return None
        try:
            record = look_up_access_token(
                components.reader,
                form["token"],
                components.introspection_memory,
                components.self_contained_tokens,
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
        body = self._dumps(payload).encode()
        self._introspections["active" if active else "inactive"].inc()
        return "200 OK", [*_HEADERS, ("Content-Length", str(len(body)))], body

    def _client(self, authorization: str | None) -> ClientRecord | None:
        client_id, secret = parse_basic_credentials(authorization)
        if not client_id or secret is None:
            return None
        try:
            client = self._find_client(client_id)
        except Exception:  # noqa: BLE001 - Flask's path reads it again and answers
            return None
        if client is None or not client.can_introspect:
            return None
        if not client.check_endpoint_auth_method("client_secret_basic", "introspection"):
            return None
        if not client.check_client_secret(secret):
            return None
        return client
