"""Grants on top of Authlib's: password, client_credentials, refresh_token, authorization_code.

Authlib parses the request, authenticates the client and dispatches on grant_type; these
subclasses replace what Authlib 1.9 gets wrong for us: bad user credentials are `invalid_grant`
(RFC 6749 §5.2), not `invalid_request`; scope and RFC 8707 `resource` narrow the client's
allowances; refresh rotation is atomic with reuse detection (see tokens.py); and the
authorization code grant requires PKCE with S256 from every client (Authlib's CodeChallenge
accepts `plain` and codes without a challenge), consumes each code atomically and revokes the
tokens of a code used twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from authlib.oauth2.rfc6749 import grants

from auth_server.clients import ClientRecord
from auth_server.db import rolled_back_on_error
from auth_server.models import User
from auth_server.protocol import pkce
from auth_server.protocol.errors import (
    AccessDeniedError,
    AuthorizationPageError,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    OAuth2Error,
    UnauthorizedClientError,
    UnsupportedResponseTypeError,
    UserScopeError,
)
from auth_server.protocol.policy import resolve_audience, resolve_scope, resolve_user_scope
from auth_server.tokens import RequestContext
from shared.protocol.dpop import is_thumbprint

# Confidential clients: their secret, in the Authorization header or the form.
CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
# Where public clients (client_id alone, RFC 6749 §2.3) are accepted too: the code exchange,
# refreshing, and revoking their own tokens.
PUBLIC_CLIENT_AUTH_METHODS = [*CLIENT_AUTH_METHODS, "none"]


GRANT_TYPES = ("authorization_code", "password", "client_credentials", "refresh_token")


def supported_grant_types(settings) -> list[str]:
    """The grant types this deployment serves (token endpoint and RFC 8414 metadata).

    The password grant is deprecated (RFC 9700 §2.4: MUST NOT be used); it stays for
    first-party apps until a deployment turns it off with PASSWORD_GRANT_ENABLED=0.
    """
    return [g for g in GRANT_TYPES if g != "password" or settings.password_grant_enabled]


class _TesseraGrant:
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS
    GRANT_TYPE: str

    if TYPE_CHECKING:
        # provided by the Authlib grant class this is mixed into
        request: Any
        server: Any

        def authenticate_token_endpoint_client(self) -> ClientRecord: ...

    def _authenticated_client(self) -> ClientRecord:
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
        return RequestContext(
            ip=getattr(self.request, "client_ip", None),
            user_agent=getattr(self.request, "user_agent", None),
        )

    def _resources(self) -> list[str]:
        return self.request.form.getlist("resource")

    def _dpop_jkt(self) -> str | None:
        """The thumbprint of the key this request's DPoP proof proved (RFC 9449), if any."""
        proof = getattr(self.request, "dpop_proof", None)
        return proof.jkt if proof is not None else None


class PasswordGrant(_TesseraGrant, grants.ResourceOwnerPasswordCredentialsGrant):
    """RFC 6749 §4.3, for first-party clients only. RFC 9700 §2.4 says it MUST NOT be used; it
    stays while first-party apps move to the authorization code flow, and
    PASSWORD_GRANT_ENABLED=0 removes it (supported_grant_types)."""

    def validate_token_request(self):
        client = self._authenticated_client()
        form = self.request.form
        username, password = form.get("username"), form.get("password")
        if not username or password is None:
            raise InvalidRequestError("The username and password parameters are required.")
        self.audience = resolve_audience(self._resources(), client.audience_list)
        ctx = self._context()
        # A hashing slot first (503 at once if none), then counted before the hash (429 past
        # a limit); a right password gives its count back.
        accounts = self.components.accounts()
        with (
            self.components.passwords.slot(),
            self.components.login_throttle.attempt(username, ctx.ip) as check,
            rolled_back_on_error(accounts.session),
        ):
            user = accounts.authenticate(username, password, client_id=client.client_id, ip=ctx.ip)
            if user is not None:
                check.succeeded()
        if user is None:
            raise InvalidGrantError("The username or password is incorrect.")
        # Read with the password hash just verified; the issuance re-checks it (epochs.py).
        self.user_epoch = user.token_epoch
        self.scope = resolve_user_scope(
            self.request.payload.scope, client.scope_list, user.scope_limit
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
            user_epoch=self.user_epoch,
            dpop_jkt=self._dpop_jkt(),
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
            self.request.client,
            self.scope,
            self.audience,
            self._context(),
            dpop_jkt=self._dpop_jkt(),
        )
        return 200, token, self.TOKEN_RESPONSE_HEADER


class RefreshTokenGrant(_TesseraGrant, grants.RefreshTokenGrant):
    """RFC 6749 §6 with rotation on every use and family revocation on reuse. Public clients
    refresh too: rotation with reuse detection is what protects their tokens (RFC 9700
    §4.14.2)."""

    TOKEN_ENDPOINT_AUTH_METHODS = PUBLIC_CLIENT_AUTH_METHODS

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
            dpop_jkt=self._dpop_jkt(),
        )
        return 200, token, self.TOKEN_RESPONSE_HEADER


# Authorization request parameters that may appear once at most (RFC 6749 §3.1); `resource`
# may repeat (RFC 8707 §2).
_SINGLE_PARAMETERS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "dpop_jkt",
)
MAX_AUTHORIZATION_REQUEST = 8192


class AuthorizationCodeGrant(_TesseraGrant, grants.AuthorizationCodeGrant):
    """RFC 6749 §4.1 with PKCE (RFC 7636), S256 only and required of every client (RFC 9700
    §2.1.1), and the issuer in every authorization response (RFC 9207).

    The authorization endpoint (endpoints/authorize.py) calls validate_authorization_request
    on the query parameters, logs the user in, then create_authorization_response. The token
    endpoint dispatches here on grant_type=authorization_code.
    """

    TOKEN_ENDPOINT_AUTH_METHODS = PUBLIC_CLIENT_AUTH_METHODS
    # Set by validate_authorization_request.
    state: str | None = None
    code_challenge: str | None = None
    requested_scope: str | None = None
    audience: list[str] | None = None
    dpop_jkt: str | None = None

    # -- authorization endpoint ------------------------------------------------------------

    def validate_authorization_request(self) -> str:
        """Check the request; return the redirect_uri.

        Until the client and its redirect_uri are known good, errors are AuthorizationPageError
        (shown to the user, never redirected: RFC 6749 §4.1.2.1). After that, they are OAuth2
        errors carrying the redirect_uri and the state, to send back to the client.
        """
        request = self.request
        params = request.payload.datalist
        if len(request.uri) > MAX_AUTHORIZATION_REQUEST:
            raise AuthorizationPageError("The authorization request is too long.")
        client_id = self._page_parameter(params, "client_id")
        if not client_id:
            raise AuthorizationPageError("The request does not name a client (client_id).")
        client = self.server.query_client(client_id)
        if client is None:
            raise AuthorizationPageError("The client of this request is unknown.")
        redirect_uri = self._page_parameter(params, "redirect_uri")
        if not redirect_uri:
            # Required even with one registered URI, so the token request can repeat it.
            raise AuthorizationPageError("The request has no redirect_uri.")
        if not client.check_redirect_uri(redirect_uri):
            raise AuthorizationPageError("The redirect_uri is not registered for this client.")
        # The state comes back exactly as sent, so it must be unambiguous.
        self.state = self._page_parameter(params, "state")
        request.client = client
        self.redirect_uri = redirect_uri
        try:
            self._validate_for_client(client, params)
        except OAuth2Error as error:
            error.redirect_uri = redirect_uri
            raise
        return redirect_uri

    def _page_parameter(self, params, name: str) -> str | None:
        values = params.get(name, [])
        if len(values) > 1:
            raise AuthorizationPageError(f"The parameter {name} is repeated.")
        return values[0] if values else None

    def _validate_for_client(self, client, params) -> None:
        for name in _SINGLE_PARAMETERS:
            if len(params.get(name, [])) > 1:
                raise InvalidRequestError(f"The parameter {name} is repeated.")
        payload = self.request.payload.data
        response_type = payload.get("response_type")
        if not response_type:
            raise InvalidRequestError("The response_type parameter is required.")
        if response_type != "code":
            # Not Authlib's default description: it would echo the request's value.
            raise UnsupportedResponseTypeError(
                response_type, description="Only response_type=code is supported."
            )
        if not client.check_response_type(response_type):
            raise UnauthorizedClientError(
                "The client is not allowed the grant type authorization_code."
            )
        challenge = payload.get("code_challenge")
        if not challenge:
            raise InvalidRequestError("PKCE is required: send code_challenge (S256).")
        if payload.get("code_challenge_method") != "S256":
            # RFC 7636 §4.3: absent means plain, and plain is refused (RFC 9700 §2.1.1).
            raise InvalidRequestError("The code_challenge_method must be S256.")
        if not pkce.is_s256_challenge(challenge):
            raise InvalidRequestError("The code_challenge is not a S256 challenge.")
        self.code_challenge = challenge
        self.requested_scope = payload.get("scope")
        # The client's limits now; the user's are known only after the login.
        resolve_scope(self.requested_scope, client.scope_list)
        self.audience = resolve_audience(params.get("resource", []), client.audience_list)
        self.prompt = (payload.get("prompt") or "").split()
        dpop_jkt = payload.get("dpop_jkt")
        if dpop_jkt is not None and not is_thumbprint(dpop_jkt):
            # RFC 9449 §10: the base64url SHA-256 JWK thumbprint of the client's DPoP key.
            raise InvalidRequestError("The dpop_jkt parameter is not a JWK SHA-256 thumbprint.")
        self.dpop_jkt = dpop_jkt

    def scope_for(self, user: User) -> list[str]:
        """The scopes the code will carry: the request's, within the client's and the user's."""
        client = self.request.client
        try:
            return resolve_user_scope(self.requested_scope, client.scope_list, user.scope_limit)
        except UserScopeError as error:
            # RFC 6749 §4.1.2.1: the authorization server denies the request for this user.
            raise AccessDeniedError(error.description, redirect_uri=self.redirect_uri) from error
        except OAuth2Error as error:
            error.redirect_uri = self.redirect_uri
            raise

    def create_authorization_response(
        self, redirect_uri: str, grant_user: User, user_epoch: int | None = None
    ):
        """Issue a code for the logged-in user; (status, body, headers) redirecting to the
        client with code, state and iss (RFC 6749 §4.1.2, RFC 9207). 303: the browser follows
        it with a GET, never re-posting the password (RFC 9700 §4.12).

        `user_epoch` is the user's epoch read with the verified password; it defaults to the
        one on `grant_user` (a code issued right after the password check)."""
        client = self.request.client
        user = grant_user
        scope = self.scope_for(user)
        try:
            code = self.components.tokens().issue_authorization_code(
                client,
                user,
                redirect_uri,
                scope,
                self.audience,
                self.code_challenge,
                self._context(),
                # read with the password hash the login page verified
                user_epoch=user.token_epoch if user_epoch is None else user_epoch,
                dpop_jkt=self.dpop_jkt,
            )
        except (InvalidGrantError, InvalidClientError) as error:
            # The user's or the client's tokens were revoked during this login (RFC 6749
            # §4.1.2.1 has neither invalid_grant nor invalid_client): the login did not happen.
            raise AccessDeniedError(
                description=error.description, redirect_uri=redirect_uri
            ) from error
        return 303, "", [("Location", self.response_uri({"code": code}))]

    def response_uri(self, params: dict) -> str:
        """The redirect_uri with the response parameters, the state and the issuer added to its
        query (RFC 6749 §3.1.2: a query it has is kept)."""
        params = dict(params)
        if self.state is not None:
            params["state"] = self.state
        params["iss"] = self.components.settings.auth_issuer
        parts = urlsplit(self.redirect_uri)
        query = "&".join(q for q in (parts.query, urlencode(params)) if q)
        return urlunsplit(parts._replace(query=query))

    def error_response_uri(self, error: OAuth2Error) -> str:
        params = {"error": error.error}
        if error.description:
            params["error_description"] = error.description
        return self.response_uri(params)

    # -- token endpoint ----------------------------------------------------------------------

    def validate_token_request(self):
        self._authenticated_client()
        form = self.request.form
        code, redirect_uri = form.get("code"), form.get("redirect_uri")
        if not code:
            raise InvalidRequestError("The code parameter is required.")
        if not redirect_uri:
            raise InvalidRequestError("The redirect_uri parameter is required.")
        self.code = code
        self.token_redirect_uri = redirect_uri

    def create_token_response(self):
        token = self.components.tokens().redeem_authorization_code(
            self.request.client,
            self.code,
            self.token_redirect_uri,
            self.request.form.get("code_verifier"),
            self._resources(),
            self._context(),
            dpop_jkt=self._dpop_jkt(),
        )
        return 200, token, self.TOKEN_RESPONSE_HEADER
