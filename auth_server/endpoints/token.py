"""RFC 6749 §3.2 token endpoint: authorization_code, password, client_credentials, refresh_token.

A request with a `DPoP` header (RFC 9449) has its proof checked here, before any grant runs;
the grants read the proven key from the OAuth request (server.py) and bind what they issue.
client_credentials, which machine clients call for every token, skips Authlib's machinery
(auth_server/protocol/client_credentials.py) and answers exactly what Authlib's grant would.
"""

from __future__ import annotations

from authlib.consts import default_json_headers
from flask import Blueprint, Response, current_app, g, json, request

from auth_server.db import db
from auth_server.endpoints.forms import require_form
from auth_server.protocol.client_credentials import authenticate_confidential_client
from auth_server.protocol.errors import InvalidRequestError, OAuth2Error
from auth_server.web_errors import error_response

bp = Blueprint("token", __name__)


@bp.post("/oauth/token")
def token():
    # RFC 8707 §2: `resource` may be given several times; nothing else may.
    require_form(repeatable=frozenset({"resource"}))
    grant_type = request.form.get("grant_type")
    if not grant_type:
        # RFC 6749 §5.2: a missing required parameter is invalid_request, not an unknown grant.
        raise InvalidRequestError("The grant_type parameter is required.")
    components = current_app.extensions["tessera"]
    now = components.now()
    g.dpop_proof = components.dpop.check(
        request.headers.getlist("DPoP"),
        request.method,
        components.settings.auth_issuer + request.path,
        now,
    )
    if grant_type == "client_credentials" and components.lean_client_credentials:
        response = _client_credentials(components)
    else:
        response = components.server.create_token_response()
    response.headers.update(components.dpop.nonce_header(now))
    return response


def _client_credentials(components) -> Response:
    # Errors are answered here, as Authlib answers its grants' errors (not by the app's error
    # handlers): the DPoP-Nonce header goes on them too.
    form = request.form
    try:
        client = authenticate_confidential_client(
            request.headers.get("Authorization"),
            form,
            lambda client_id, fresh=False: components.clients.find(
                db.session, client_id, fresh=fresh
            ),
        )
        proof = g.dpop_proof
        body = components.client_credentials().token_response(
            client, form, request.remote_addr, proof.jkt if proof is not None else None
        )
    except OAuth2Error as error:
        return error_response(error)
    return Response(json.dumps(body), status=200, headers=default_json_headers)
