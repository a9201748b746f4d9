"""RFC 8414 authorization server metadata and the JWKS (RFC 7517) that verifies our JWTs."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from auth_server.grants import CLIENT_AUTH_METHODS

bp = Blueprint("metadata", __name__)


def build_metadata(issuer: str) -> dict:
    return {
        # RFC 8414 §3.3: `issuer` MUST be identical to the issuer the client asked for.
        "issuer": issuer,
        "token_endpoint": f"{issuer}/oauth/token",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "introspection_endpoint": f"{issuer}/oauth/introspect",
        "revocation_endpoint": f"{issuer}/oauth/revoke",
        "grant_types_supported": ["password", "client_credentials", "refresh_token"],
        # REQUIRED by RFC 8414 §2; no grant here uses the authorization endpoint.
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
    }


@bp.get("/.well-known/oauth-authorization-server")
def metadata():
    settings = current_app.extensions["tessera"].settings
    response = jsonify(build_metadata(settings.auth_issuer))
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


@bp.get("/.well-known/jwks.json")
def jwks():
    response = jsonify(current_app.extensions["tessera"].keyring.jwks())
    # Keys are published one rotation before they sign, so a short cache is always safe.
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
