"""Protect any Flask API with introspected bearer tokens.

    guard = TokenGuard(app, introspection_client=client, audience="urn:tessera:notes",
                       realm="tessera", expected_issuer="https://auth.example")

    @app.get("/things")
    @require_token("things:read")
    def things():
        return {"sub": current_token().sub}

With ``dpop=ResourceDPoP(...)`` (shared/guard/dpop_resource.py) the guard also accepts RFC 9449
`Authorization: DPoP` requests and refuses bound tokens sent as bearer tokens; without it,
only bearer requests get through and a bound token never does.

Every request is introspected (no cache), so a revoked token stops working at once. This is
the hot path of every protected request: it parses the header, makes one pooled HTTP call and
compares a few fields, nothing more.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, Response, current_app, g, request

from shared.guard.bearer import (
    BEARER,
    DPOP,
    BearerError,
    challenge_response,
    check_realm,
    check_scope_token,
    credentials_from_request,
)
from shared.guard.dpop_resource import ResourceDPoP
from shared.guard.introspection import (
    IntrospectionClient,
    IntrospectionResult,
    IntrospectionUnavailable,
)
from shared.protocol.oauth_syntax import NO_STORE
from shared.service import request_id

EXTENSION_KEY = "tessera_token_guard"
ACCESS_TOKEN_USE = "access_token"


F = TypeVar("F", bound=Callable[..., Any])


class TokenGuard:
    """Flask extension holding what ``require_token`` needs: the client and what to expect."""

    def __init__(
        self,
        app: Flask | None = None,
        *,
        introspection_client: IntrospectionClient,
        audience: str,
        realm: str,
        expected_issuer: str | None = None,
        retry_after: int = 5,
        clock: Callable[[], float] = time.time,
        dpop: ResourceDPoP | None = None,
    ) -> None:
        if not audience:
            raise ValueError("audience is required")
        self.introspection_client = introspection_client
        self.audience = audience
        self.realm = check_realm(realm)
        self.expected_issuer = expected_issuer
        self.retry_after = int(retry_after)
        self._clock = clock
        self.dpop = dpop
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        app.extensions[EXTENSION_KEY] = self
        request_id.init_app(app)

    def verify(self, scopes: tuple[str, ...]) -> IntrospectionResult:
        """The current request's token if it grants ``scopes`` here; else raise BearerError.

        IntrospectionUnavailable passes through: the caller answers 503.
        """
        scheme, token = credentials_from_request(
            request, (BEARER, DPOP) if self.dpop else (BEARER,)
        )
        try:
            return self._verify(scheme, token, scopes)
        except BearerError as error:
            if scheme == DPOP:
                error.scheme = DPOP  # RFC 9449 §7.1: a DPoP request gets a DPoP challenge
            raise

    def _verify(self, scheme: str, token: str, scopes: tuple[str, ...]) -> IntrospectionResult:
        proof = self.dpop.proof_of(request, scheme, token) if self.dpop else None
        result = self.introspection_client.introspect(
            token, request_id=request_id.current_request_id()
        )
        if not result.active:
            raise BearerError.invalid_token("The access token is not active")
        # A refresh token must never open a resource: it is longer-lived and meant for the AS.
        if result.token_use is not None and result.token_use != ACCESS_TOKEN_USE:
            raise BearerError.invalid_token("The token is not an access token")
        # RFC 7519 §4.1.4: on or after exp the token MUST NOT be accepted, whatever `active` says.
        if result.exp is not None and result.exp <= self._clock():
            raise BearerError.invalid_token("The access token has expired")
        if self.expected_issuer is not None and result.iss != self.expected_issuer:
            raise BearerError.invalid_token("The access token was issued by another issuer")
        # RFC 9068 §4: a token whose aud does not include this resource server MUST be rejected
        # as invalid (401 invalid_token); it is not a token that merely lacks a scope here.
        if self.audience not in result.aud:
            raise BearerError.invalid_token("The access token is not meant for this resource")
        if self.dpop is not None:
            self.dpop.confirm(proof, result)
        elif result.cnf_jkt is not None:
            raise BearerError.invalid_token("The access token is bound to a key (DPoP)")
        # RFC 6750 §3.1: a valid token for this resource without a required scope.
        for scope in scopes:
            if scope not in result.scope:
                raise BearerError.insufficient_scope(
                    "The access token lacks a scope this request requires", scopes
                )
        if self.dpop is not None:
            self.dpop.first_use(proof)  # last: only a request that passed remembers its proof
        return result

    def challenge(self, error: BearerError) -> Response:
        """The RFC 6750 §3 response for ``error`` in this guard's realm."""
        return challenge_response(error, self.realm, self.dpop.algs if self.dpop else ())

    def unavailable(self) -> Response:
        """503 when the authorization server cannot say whether the token is valid."""
        body = {
            "error": "temporarily_unavailable",
            "error_description": "The access token cannot be checked now; retry later",
        }
        headers = {"Retry-After": str(self.retry_after), **NO_STORE}
        return Response(json.dumps(body), 503, headers, mimetype="application/json")


def require_token(*scopes: str) -> Callable[[F], F]:
    """Decorate a view so it runs only for a valid token granting every one of ``scopes``."""
    required = tuple(check_scope_token(scope) for scope in dict.fromkeys(scopes))

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            guard = _guard()
            try:
                g.token = guard.verify(required)
            except BearerError as error:
                return guard.challenge(error)
            except IntrospectionUnavailable:
                return guard.unavailable()
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator


def current_token() -> IntrospectionResult:
    """The verified token of the current request (inside a ``require_token`` view)."""
    token = g.get("token")
    if not isinstance(token, IntrospectionResult):
        raise RuntimeError("current_token() is only available in a view guarded by require_token")
    return token


def _guard() -> TokenGuard:
    try:
        guard: TokenGuard = current_app.extensions[EXTENSION_KEY]
        return guard
    except KeyError:
        raise RuntimeError("require_token needs a TokenGuard initialised on this app") from None
