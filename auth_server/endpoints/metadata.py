"""RFC 8414 authorization server metadata and the JWKS (RFC 7517) that verifies our JWTs."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from auth_server.protocol.grants import (
    CLIENT_AUTH_METHODS,
    PUBLIC_CLIENT_AUTH_METHODS,
    supported_grant_types,
)
from shared.protocol.dpop import SUPPORTED_ALGS as DPOP_ALGS

bp = Blueprint("metadata", __name__)


def build_metadata(issuer: str, grant_types: list[str]) -> dict:
    return {
        # RFC 8414 §3.3: `issuer` MUST be identical to the issuer the client asked for.
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/oauth/authorize",
        "token_endpoint": f"{issuer}/oauth/token",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "introspection_endpoint": f"{issuer}/oauth/introspect",
        "revocation_endpoint": f"{issuer}/oauth/revoke",
        "grant_types_supported": grant_types,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        # RFC 7636 §4.2: S256 only; `plain` is refused (RFC 9700 §2.1.1).
        "code_challenge_methods_supported": ["S256"],
        # RFC 9207: every authorization response, errors included, carries `iss`.
        "authorization_response_iss_parameter_supported": True,
        "token_endpoint_auth_methods_supported": PUBLIC_CLIENT_AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": PUBLIC_CLIENT_AUTH_METHODS,
        # RFC 9449 §5.1: the algorithms a DPoP proof may be signed with.
        "dpop_signing_alg_values_supported": list(DPOP_ALGS),
    }


@bp.get("/.well-known/oauth-authorization-server")
def metadata():
    settings = current_app.extensions["tessera"].settings
    response = jsonify(build_metadata(settings.auth_issuer, supported_grant_types(settings)))
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


@bp.get("/.well-known/jwks.json")
def jwks():
    # Read fresh, not from the worker's key cache: a key another worker already signs with
    # must be listed even right after two rotations in a row (auth_server/keys.py).
    response = jsonify(current_app.extensions["tessera"].keyring.published_jwks())
    # Keys are published one rotation before they sign, so a short cache is safe unless keys
    # are rotated twice within it; JWKSValidator does no HTTP caching (it re-fetches on an
    # unknown kid).
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
