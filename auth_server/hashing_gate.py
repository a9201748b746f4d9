"""Refuse a password check at the door while every hashing slot of this worker is taken.

A login beyond PASSWORD_HASH_CONCURRENCY is refused at once (auth_server/passwords.py), and a
client looping on logins then gets its refusals as fast as the server can write them: each
one through Flask, the metrics, client authentication and the login throttle would cost
about a millisecond of the worker's interpreter, taken from every other request in the
process (introspection above all). This WSGI middleware answers those requests before any of
that: the same RFC 6749 §5.2 `temporarily_unavailable` error, with `Cache-Control: no-store`
and `Retry-After`, for the two JSON endpoints that check a password (the password grant and
/account/password). The login page keeps its own HTML answer (endpoints/authorize.py).

Only a request that would certainly hash is refused here; whatever gets through is still
bounded by Passwords.slot(), so a slot taken between this check and the view is a 503 too.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from urllib.parse import parse_qs

from auth_server.passwords import Passwords
from shared.protocol.oauth_syntax import NO_STORE
from shared.service import request_id
from shared.service.request_id import is_safe_request_id

_BODY = json.dumps(
    {
        "error": "temporarily_unavailable",
        "error_description": "Too many logins are being checked; retry shortly.",
    }
).encode()
FORM_TYPE = "application/x-www-form-urlencoded"


class PasswordCheckGate:
    def __init__(
        self,
        app: Callable,
        passwords: Passwords,
        max_body: int,
        on_refused: Callable[[], None] | None = None,
    ):
        self.app = app
        self.passwords = passwords
        self.max_body = max_body
        self.on_refused = on_refused

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if (
            environ.get("REQUEST_METHOD") == "POST"
            and environ.get("PATH_INFO") in ("/oauth/token", "/account/password")
            and self.passwords.busy()
            and self._checks_a_password(environ)
        ):
            if self.on_refused is not None:
                self.on_refused()
            headers = [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(_BODY))),
                *NO_STORE.items(),
                ("Retry-After", str(self.passwords.busy_retry_after)),
            ]
            # Echoed as every other answer does (shared/service/request_id.py); none is made
            # up here.
            incoming = environ.get("HTTP_X_REQUEST_ID")
            if incoming and is_safe_request_id(incoming):
                headers.append((request_id.HEADER, incoming))
            start_response("503 SERVICE UNAVAILABLE", headers)
            return [_BODY]
        return self.app(environ, start_response)

    def _checks_a_password(self, environ: dict) -> bool:
        if environ["PATH_INFO"] == "/account/password":
            return True
        # The token endpoint hashes only for grant_type=password: read the (small) form, and
        # hand the same bytes on to Flask.
        if not environ.get("CONTENT_TYPE", "").startswith(FORM_TYPE):
            return False
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return False
        if not 0 < length <= self.max_body:
            return False  # Flask answers these (413, or an empty form)
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)
        grant = parse_qs(body.decode("latin-1")).get("grant_type")
        return grant == ["password"]
