"""Which scopes and audiences a token may carry (RFC 6749 §3.3, RFC 8707 §2).

A token never carries more than its client may have, nor, for a user's token, more than the
user may delegate. The request's `scope` and `resource` parameters only narrow that; asking for
more is an error rather than a silent cut, so a client never believes it holds a scope it lacks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

from auth_server.protocol.errors import InvalidScopeError, InvalidTargetError, UserScopeError
from shared.protocol.oauth_syntax import SCOPE_TOKEN


def _ordered_unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def allowed_scopes(*limits: Sequence[str] | None) -> list[str]:
    """Intersect scope limits (None means 'no limit'), keeping the first limit's order."""
    present = [list(limit) for limit in limits if limit is not None]
    if not present:
        return []
    result = _ordered_unique(present[0])
    for limit in present[1:]:
        keep = set(limit)
        result = [s for s in result if s in keep]
    return result


def resolve_scope(requested: str | None, allowed: Sequence[str]) -> list[str]:
    """The scopes to grant: all allowed ones when none are requested, else exactly those asked."""
    if requested is None or not requested.strip():
        return list(allowed)
    wanted = requested.split(" ")
    if any(not SCOPE_TOKEN.fullmatch(s) for s in wanted):
        raise InvalidScopeError("The scope parameter is malformed.")
    wanted = _ordered_unique(wanted)
    missing = [s for s in wanted if s not in set(allowed)]
    if missing:
        raise InvalidScopeError("The requested scope exceeds what this client may be granted.")
    return wanted


def resolve_user_scope(
    requested: str | None, client_scopes: Sequence[str], user_scopes: Sequence[str] | None
) -> list[str]:
    """The scopes of a user's token: within the client's limits (else InvalidScopeError, the
    client asked too much) and the user's (else UserScopeError: the client may have them, this
    user may not grant them). `user_scopes` None means the user has no limit of their own."""
    resolve_scope(requested, client_scopes)
    allowed = allowed_scopes(client_scopes, user_scopes)
    if requested is None or not requested.strip():
        return allowed
    wanted = _ordered_unique(requested.split(" "))
    refused = [s for s in wanted if s not in set(allowed)]
    if refused:
        raise UserScopeError(f"The user may not grant the scope {' '.join(refused)}.")
    return wanted


def resolve_audience(resources: Sequence[str], allowed: Sequence[str]) -> list[str]:
    """The audiences to grant: the `resource` parameters asked for, else all allowed ones."""
    if not resources:
        if not allowed:
            raise InvalidTargetError("This client is not allowed any resource.")
        return list(allowed)
    for resource in resources:
        # RFC 8707 §2: an absolute URI, without a fragment.
        try:
            parts = urlsplit(resource)
        except ValueError:  # e.g. "http://[::1": a malformed IPv6 host
            raise InvalidTargetError("The resource parameter must be an absolute URI.") from None
        if not parts.scheme or parts.fragment or "#" in resource:
            raise InvalidTargetError("The resource parameter must be an absolute URI.")
        if resource not in allowed:
            raise InvalidTargetError("The requested resource is not allowed for this client.")
    return _ordered_unique(resources)
