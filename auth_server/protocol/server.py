"""Authlib's Flask AuthorizationServer wired to Tessera's storage and request rules."""

from __future__ import annotations

from functools import cached_property

from authlib.common.security import is_secure_transport
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.integrations.flask_oauth2.requests import FlaskOAuth2Payload, FlaskOAuth2Request
from authlib.oauth2.rfc6749 import OAuth2Request
from flask import g
from flask import request as flask_request

from auth_server.db import db
from auth_server.models import USER_AGENT_LENGTH
from auth_server.protocol.client_credentials import client_with_secret
from auth_server.protocol.errors import InvalidClientError, InvalidRequestError
from auth_server.protocol.grants import (
    AuthorizationCodeGrant,
    ClientCredentialsGrant,
    PasswordGrant,
    RefreshTokenGrant,
    supported_grant_types,
)
from auth_server.protocol.revocation import RevocationEndpoint
from shared.protocol.basic_auth import parse_basic_credentials


class _FormPayload(FlaskOAuth2Payload):
    # RFC 6749 §3.2 / §2.3.1: parameters and credentials travel in the form body, never in the
    # URI; Authlib would also read the query string.
    @property
    def data(self):
        return self._request.form


class _QueryPayload(FlaskOAuth2Payload):
    # RFC 6749 §4.1.1: the authorization request is the query string, also when the login form
    # posts back to it (the form carries only the credentials and the CSRF token).
    @property
    def data(self):
        return self._request.args


class TesseraAuthorizationServer(AuthorizationServer):
    def __init__(self, components):
        # Authlib's documented constructor; query_client is the method below (it takes `fresh`).
        super().__init__(save_token=_grants_store_tokens_themselves)
        self.components = components
        for grant in (
            PasswordGrant,
            ClientCredentialsGrant,
            RefreshTokenGrant,
            AuthorizationCodeGrant,
        ):
            if grant.GRANT_TYPE in supported_grant_types(components.settings):
                self.register_grant(grant)
        self.register_endpoint(RevocationEndpoint)
        self.register_client_auth_method("client_secret_basic", _authenticate_basic)
        self.register_client_auth_method("client_secret_post", _authenticate_post)
        self.register_client_auth_method("none", _authenticate_none)

    def query_client(self, client_id: str, *, fresh: bool = False):
        return self.components.clients.find(db.session, client_id, fresh=fresh)

    def authenticate_client(self, request, methods, endpoint="token"):
        if request.headers.get("Authorization") and "client_secret" in request.form:
            # RFC 6749 §2.3: a client MUST NOT use more than one authentication method.
            raise InvalidRequestError("Use one client authentication method, not two.")
        try:
            return super().authenticate_client(request, methods, endpoint)
        except InvalidClientError as exc:
            # One answer for unknown client, wrong secret and missing credentials, so it does
            # not tell which client_ids exist. 401 + WWW-Authenticate: Basic (RFC 6749 §5.2).
            raise InvalidClientError(
                description="Client authentication failed.", status_code=401
            ) from exc

    def create_oauth2_request(self, request):
        return _OAuthRequest(flask_request, self._public_base, _FormPayload)

    def authorization_code_grant(self) -> AuthorizationCodeGrant:
        """The grant for the authorization request in the current request's query string."""
        return AuthorizationCodeGrant(
            _OAuthRequest(flask_request, self._public_base, _QueryPayload), self
        )

    @cached_property
    def _public_base(self) -> str:
        issuer = self.components.settings.auth_issuer
        if is_secure_transport(issuer):
            return issuer
        # Only reachable with AUTH_ALLOW_HTTP_ISSUER (settings refuse it otherwise): the
        # operator chose plain http on a network host, so Authlib's check must not undo that.
        return "https://" + issuer.split("://", 1)[1]


class _OAuthRequest(FlaskOAuth2Request):
    """Authlib's request, with the URI the client used: the public issuer's, not the hop's.

    Authlib refuses a request whose URI is http on a host that is not loopback. Behind the
    proxy that terminates TLS, every request arrives as http on an internal name
    (http://auth-server:8000), so the check runs on the issuer instead, which AuthSettings
    validates at start-up.
    """

    def __init__(self, request, public_base: str, payload_class):
        OAuth2Request.__init__(
            self,
            request.method,
            public_base + request.full_path.rstrip("?"),
            headers=request.headers,
        )
        self._request = request
        self.payload = payload_class(request)
        self.client_ip = request.remote_addr
        # The DPoP proof the token endpoint verified (endpoints/token.py), or None.
        self.dpop_proof = g.get("dpop_proof")
        self.user_agent = user_agent_of(request)


def _grants_store_tokens_themselves(token, request):
    # Every grant stores its tokens inside its own transaction (auth_server/tokens.py), so
    # Authlib's save_token hook is never the place: reaching it is a programming error.
    raise NotImplementedError("grants store their tokens in TokenService")


def user_agent_of(request) -> str | None:
    """The User-Agent header, cut to what the tables keep; it is shown, never trusted."""
    # Printable characters only: a NUL would be a PostgreSQL error, a control character noise.
    value = "".join(c for c in request.headers.get("User-Agent", "") if c.isprintable())
    return value[:USER_AGENT_LENGTH] or None


def _authenticate_basic(query_client, request):
    """client_secret_basic that survives any Authorization header (Authlib's raises on
    non-UTF-8 credentials, which would be a 500)."""
    return client_with_secret(
        query_client, *parse_basic_credentials(request.headers.get("Authorization"))
    )


def _authenticate_post(query_client, request):
    # RFC 6749 §2.3.1: a client MUST NOT use more than one authentication method per request.
    if request.headers.get("Authorization"):
        return None
    return client_with_secret(
        query_client, request.form.get("client_id"), request.form.get("client_secret")
    )


def _authenticate_none(query_client, request):
    """RFC 6749 §2.3 / RFC 7591 `none`: a public client names itself with client_id in the form
    and sends no secret at all. Authlib then accepts it only for clients whose method it is
    (ClientRecord.check_endpoint_auth_method), so a confidential client cannot skip its secret.
    """
    if request.headers.get("Authorization") or "client_secret" in request.form:
        return None
    client_id = request.form.get("client_id")
    return query_client(client_id) if client_id else None
