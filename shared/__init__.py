"""Tessera's Python code outside the two services, one subpackage per audience.

- ``shared.service``: plumbing both services run on (settings, database, logging, metrics,
  request ids, serving, the command-line entrypoint, CORS, ...); Flask and SQLAlchemy.
- ``shared.guard``: what a resource server needs to accept an access token (RFC 6750 bearer
  parsing, RFC 7662 introspection with its cache and revocation-event subscriber,
  ``require_token``, RFC 9449 DPoP checks); Flask.
- ``shared.client``: the client library third-party apps import (``OAuthClient``, token stores,
  ``JWKSValidator``, DPoP keys); neither Flask nor SQLAlchemy.
- ``shared.protocol``: Flask-free building blocks the other three use (DPoP proofs, digests,
  Basic credentials, the revocation event format, JSON from outside, HTTP with a deadline).
"""
