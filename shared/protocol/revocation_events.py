"""Revocation events: what the authorization server announces and resource servers act on.

An event is the JSON body of a Security Event Token (RFC 8417 §2) carrying one Shared Signals
CAEP "session-revoked" event, unsigned (the channel is private to the deployment; see
docs/revocation-events.md):

    {"iss": "https://auth.example", "jti": "5f0c...", "iat": 1764450000,
     "events": {"https://schemas.openid.net/secevent/caep/event-type/session-revoked": {
         "subject": {"format": "complex", "user": {"format": "iss_sub", "iss": ..., "sub": ...}},
         "event_timestamp": 1764450000, "reason_admin": {"en": "password_changed"}}}}

The subject is an RFC 9493 complex subject naming exactly one of: `user` (iss_sub: every
token of that `sub`), `application` (opaque: every token issued to that `client_id`),
`session` (opaque: every token of that login, the introspection answer's `sid`), or the
non-standard `tessera_token` (opaque: one access token's `jti`) and `tessera_signing_key`
(opaque: every token signed by that `kid`).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

SESSION_REVOKED = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"

# What an event can name, and the member of the complex subject that carries it.
USER = "sub"
CLIENT = "client_id"
SESSION = "sid"
TOKEN = "jti"
SIGNING_KEY = "kid"
_MEMBERS = {
    "user": USER,
    "application": CLIENT,
    "session": SESSION,
    "tessera_token": TOKEN,
    "tessera_signing_key": SIGNING_KEY,
}
_MEMBER_OF = {kind: member for member, kind in _MEMBERS.items()}

Target = tuple[str, str]  # (USER | CLIENT | SESSION | TOKEN | SIGNING_KEY, value)


def build(issuer: str, target: Target, reason: str, now: int) -> dict[str, Any]:
    """The SET body announcing that everything ``target`` names is revoked."""
    kind, value = target
    member = _MEMBER_OF[kind]
    if kind == USER:
        identifier = {"format": "iss_sub", "iss": issuer, "sub": value}
    else:
        identifier = {"format": "opaque", "id": value}
    return {
        "iss": issuer,
        "jti": uuid.uuid4().hex,
        "iat": now,
        "events": {
            SESSION_REVOKED: {
                "subject": {"format": "complex", member: identifier},
                "event_timestamp": now,
                "reason_admin": {"en": reason},
            }
        },
    }


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":"), sort_keys=True).encode()


def targets(body: bytes | str, issuer: str | None) -> list[Target]:
    """What an event body revokes; ValueError if it is not an event this module builds (or
    comes from another issuer): the subscriber then forgets everything, never nothing."""
    data = json.loads(body)
    if not isinstance(data, dict) or not isinstance(data.get("events"), dict):
        raise ValueError("not a security event token")
    if issuer is not None and data.get("iss") != issuer:
        raise ValueError("event from another issuer")
    event = data["events"].get(SESSION_REVOKED)
    subject = event.get("subject") if isinstance(event, dict) else None
    if not isinstance(subject, dict) or subject.get("format") != "complex":
        raise ValueError("no complex subject in a session-revoked event")
    found = []
    for member, kind in _MEMBERS.items():
        identifier = subject.get(member)
        if identifier is None:
            continue
        if not isinstance(identifier, dict):
            raise ValueError(f"malformed subject member {member!r}")
        value = identifier.get("sub" if kind == USER else "id")
        if not isinstance(value, str) or not value:
            raise ValueError(f"malformed subject member {member!r}")
        found.append((kind, value))
    if not found:
        raise ValueError("the subject names nothing this server knows")
    return found
