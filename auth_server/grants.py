"""Token-endpoint grants on top of Authlib's: password, client_credentials, refresh_token.

Authlib parses the request, authenticates the client and dispatches on grant_type; these
subclasses replace what Authlib 1.9 gets wrong for us: bad user credentials are `invalid_grant`
(RFC 6749 §5.2), not `invalid_request`; scope and RFC 8707 `resource` narrow the client's
allowances; and refresh rotation is atomic with reuse detection (see tokens.py).
"""

from __future__ import annotations

from authlib.oauth2.rfc6749 import grants

from auth_server.errors import InvalidGrantError, InvalidRequestError, UnauthorizedClientError
from auth_server.models import Client
from auth_server.policy import allowed_scopes, resolve_audience, resolve_scope
from auth_server.tokens import RequestContext

CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


class _TesseraGrant:
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS
    GRANT_TYPE: str

    def _authenticated_client(self) -> Client:
        client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError(
                f"The client is not allowed the grant type {self.GRANT_TYPE}."
            )
        self.request.client = client
        return client

    @property
    def components(self):
        return self.server.components

    def _context(self) -> RequestContext:
        return RequestContext(ip=getattr(self.request, "client_ip", None))

    def _resources(self) -> list[str]:
        return self.request.form.getlist("resource")


class PasswordGrant(_TesseraGrant, grants.ResourceOwnerPasswordCredentialsGrant):
    """RFC 6749 §4.3, for first-party clients only (RFC 9700 §2.4 discourages it elsewhere)."""

    def validate_token_request(self):
        client = self._authenticated_client()
        form = self.request.form
        username, password = form.get("username"), form.get("password")
        if not username or password is None:
            raise InvalidRequestError("The username and password parameters are required.")
        self.audience = resolve_audience(self._resources(), client.audience_list)
        ctx = self._context()
        self.components.login_throttle.check(username, ctx.ip)
        user = self.components.accounts().authenticate(
            username, password, client_id=client.client_id, ip=ctx.ip
        )
        if user is None:
            self.components.login_throttle.failed(username, ctx.ip)
            raise InvalidGrantError("The username or password is incorrect.")
        user_scopes = user.allowed_scopes.split() if user.allowed_scopes is not None else None
        self.scope = resolve_scope(
            self.request.payload.scope, allowed_scopes(client.scope_list, user_scopes)
        )
        self.request.user = user

    def create_token_response(self):
        token = self.components.tokens().issue_user_tokens(
            self.request.client,
            self.request.user,
            self.scope,
            self.audience,
            self.GRANT_TYPE,
            self._context(),
        )
        return 200, token, self.TOKEN_RESPONSE_HEADER


class ClientCredentialsGrant(_TesseraGrant, grants.ClientCredentialsGrant):
    """RFC 6749 §4.4: the client acts for itself; `sub` is its client_id (RFC 9068 §2.2)."""

    def validate_token_request(self):
        client = self._authenticated_client()
        self.scope = resolve_scope(self.request.payload.scope, client.scope_list)
        self.audience = resolve_audience(self._resources(), client.audience_list)

    def create_token_response(self):
        token = self.components.tokens().issue_client_token(
            self.request.client, self.scope, self.audience, self._context()
        )
        return 200, token, self.TOKEN_RESPONSE_HEADER


class RefreshTokenGrant(_TesseraGrant, grants.RefreshTokenGrant):
    """RFC 6749 §6 with rotation on every use and family revocation on reuse."""

    def validate_token_request(self):
        self._authenticated_client()
        refresh_token = self.request.form.get("refresh_token")
        if not refresh_token:
            raise InvalidRequestError("The refresh_token parameter is required.")
        self.refresh_token = refresh_token

    def create_token_response(self):
        token = self.components.tokens().rotate_refresh_token(
            self.request.client,
            self.refresh_token,
            self.request.payload.scope,
            self._resources(),
            self._context(),
        )
        return 200, token, self.TOKEN_RESPONSE_HEADER
