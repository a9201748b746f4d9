"""RFC 7009 token revocation: Authlib's endpoint, calling RevocationService for the work."""

from __future__ import annotations

from authlib.consts import default_json_headers
from authlib.oauth2.rfc7009 import RevocationEndpoint as _RevocationEndpoint

from auth_server.protocol.errors import InvalidRequestError
from auth_server.protocol.grants import PUBLIC_CLIENT_AUTH_METHODS
from shared.protocol.oauth_syntax import MAX_TOKEN_LENGTH


class RevocationEndpoint(_RevocationEndpoint):
    # Public clients (browser apps) log out too: RFC 7009 §2.1 authenticates them by client_id.
    CLIENT_AUTH_METHODS = PUBLIC_CLIENT_AUTH_METHODS

    def create_endpoint_response(self, request):
        client = self.authenticate_endpoint_client(request)
        token = request.form.get("token")
        if not token:
            raise InvalidRequestError("The token parameter is required.")
        # RFC 7009 §2.1: the hint MAY be ignored; we search every type whatever it says.
        hint = request.form.get("token_type_hint")
        # RFC 7009 §2.2: an invalid or unknown token is not an error (200). A token issued to
        # another client (§2.1) is not revoked, and gets the very same answer: anyone can
        # name a public client, so any other answer would tell a thief whether a stolen
        # token is live.
        if len(token) > MAX_TOKEN_LENGTH:
            return 200, {}, default_json_headers
        self.server.components.revocations().revoke_presented_token(
            client.id, client.client_id, token, hint, getattr(request, "client_ip", None)
        )
        return 200, {}, default_json_headers
