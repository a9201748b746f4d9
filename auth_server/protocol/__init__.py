"""The OAuth protocol of the authorization server, apart from the web layer.

Authlib's server and grants, the RFC 7662 introspection and RFC 7009 revocation endpoints, PKCE,
the scope and audience policy and the errors they raise. Nothing here imports Flask except
server.py, whose base class is Authlib's Flask integration (its requests are Flask's).
"""
