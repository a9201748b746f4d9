"""Flask-free building blocks that the service plumbing, the resource-server guard and the client
library all use: DPoP proofs (RFC 9449), digests and fingerprints, HTTP Basic client credentials,
the revocation event format, JSON parsed from outside the process, and urllib3 pools whose calls
end at a deadline. Nothing here imports Flask or SQLAlchemy.
"""
