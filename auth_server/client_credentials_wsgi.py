"""The common client_credentials token request, answered below Flask (auth_server/fast_paths.py
says why).

Machine clients ask for their tokens one way: POST /oauth/token, a form with
`grant_type=client_credentials`, perhaps `scope` and RFC 8707 `resource`s, client_secret_basic
or client_secret_post credentials, no DPoP proof. This middleware answers that request with the
functions the view calls (auth_server/endpoints/token.py: authenticate_confidential_client and
ClientCredentials.token_response, auth_server/protocol/client_credentials.py) and the same
bytes out: status, headers (the JSON and no-store headers, DPoP-Nonce when nonces are on, the
`Vary: Origin` of every answer of an endpoint browser apps call), body, rows, audit event and
its log line, metrics.

Flask answers, as before:

- another content type, a body that is not a small plain form, a query string; a parameter
  other than these five, an empty one, a repeated one but `resource`; another grant type;
- a DPoP header (the proof is checked and remembered there), an Origin header (CORS answers
  with the registered origins), the lean grant switched off (`lean_client_credentials`);
- a client that does not authenticate, a database failure while reading its registration, a
  grant type, scope or resource the client may not have: all decided before anything is
  written, so Flask decides them again and answers them as before.

Once the issuance has begun, this answers whatever comes of it, as the view would, because
Flask would issue a second time: the token; the refusal of an issuance a revocation overtook
(ClientCredentials.issue recorded it and forgot the client; Flask would read the client again
and issue); a database or configuration failure (web_errors.failure_error; Flask would try the
write again).

tests/auth_server/test_client_credentials_wsgi.py compares the two answers request by request.
"""

from __future__ import annotations

from typing import Any

from authlib.consts import default_json_headers
from werkzeug.http import HTTP_STATUS_CODES

from auth_server.fast_paths import Answer, FastPath, small_form
from auth_server.protocol.client_credentials import GRANT_TYPE, authenticate_confidential_client
from auth_server.protocol.errors import InvalidClientError, OAuth2Error
from auth_server.web_errors import failure_error

PATH = "/oauth/token"
# Where create_app keeps the app's fast path (app.extensions).
FAST_PATH = "tessera_client_credentials_fast_path"
PARAMETERS = frozenset({"grant_type", "scope", "resource", "client_id", "client_secret"})
REPEATABLE = frozenset({"resource"})  # RFC 8707 §2
# Five parameters with room to spare (a client_id and secret, a few scopes and resources).
MAX_BODY = 4096
_HEADERS = [(name, value) for name, value in default_json_headers]
# What Cors adds to every answer of the endpoints browser apps call (create_app,
# BROWSER_APP_ENDPOINTS); a request without an Origin gets nothing else from it.
_VARY = ("Vary", "Origin")


class ClientCredentialsFastPath(FastPath):
    path = PATH
    extension = FAST_PATH
    max_body = MAX_BODY

    def _answer(self, environ: dict[str, Any]) -> Answer | None:
        components = self._components
        if not components.lean_client_credentials or components.reader is None:
            return None
        if "HTTP_DPOP" in environ or "HTTP_ORIGIN" in environ or environ.get("QUERY_STRING"):
            return None
        form = small_form(environ, PARAMETERS, self._max_body, REPEATABLE)
        if form is None or form.get("grant_type") != GRANT_TYPE:
            return None
        try:
            client = authenticate_confidential_client(
                environ.get("HTTP_AUTHORIZATION"), form, self._find_client
            )
        except Exception:  # noqa: BLE001 - nothing written: Flask's view answers it
            return None
        now = components.now()
        nonce = components.dpop.nonce_header(now)
        try:
            body = components.client_credentials().token_response(
                client, form, environ.get("REMOTE_ADDR"), None
            )
        except InvalidClientError as refused:
            # The only error of token_response raised after it began writing: issue() found the
            # client's epoch moved and recorded the refusal.
            return self._error(refused, nonce)
        except OAuth2Error:
            return None  # grant type, scope, resource: refused before anything was written
        except Exception as exc:  # noqa: BLE001 - answered as web_errors' handlers answer it
            failure = failure_error(exc)
            if failure is None:
                return None  # a bug: Flask's 500, logged there
            # The view's exception goes to the app's handler: no DPoP-Nonce on that answer.
            return self._error(failure, {})
        text = self._dumps(body).encode()
        headers = [*_HEADERS, ("Content-Length", str(len(text))), *nonce.items(), _VARY]
        return "200 OK", headers, text

    def _error(self, error: OAuth2Error, nonce: dict[str, str]) -> Answer:
        """web_errors.error_response(error) as the token endpoint's answer."""
        status, payload, headers = error()
        text = self._dumps(payload).encode()
        return (
            f"{status} {HTTP_STATUS_CODES[status].upper()}",
            [*headers, ("Content-Length", str(len(text))), *nonce.items(), _VARY],
            text,
        )
