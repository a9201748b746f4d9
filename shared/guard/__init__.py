"""What a resource server needs to accept an access token: RFC 6750 bearer parsing and error
answers, the RFC 7662 introspection client with its cache and the revocation-event subscriber
that evicts from it, ``TokenGuard``/``require_token`` for Flask views, RFC 9449 DPoP checks at the
resource server and the DPoP proof replay store.
"""
