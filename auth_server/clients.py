"""The client registry: registering clients with a server-generated secret shown once."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from auth_server import audit
from auth_server.epochs import Steps, no_steps
from auth_server.models import CLIENT_ID_PATTERN, Client
from auth_server.revocation import revoke_client_tokens
from auth_server.store import find_client, subject_exists
from shared.protocol.digests import matches_digest, sha256_hex
from shared.service.cors import origin_of

SUPPORTED_GRANT_TYPES = ("password", "client_credentials", "refresh_token", "authorization_code")
# RFC 6749 §2.1 client types. A public client cannot keep a secret (a browser app): it may only
# use the authorization code grant (with PKCE, as every client must) and refresh its tokens.
CLIENT_TYPES = ("confidential", "public")
PUBLIC_GRANT_TYPES = ("authorization_code", "refresh_token")
CONFIDENTIAL_AUTH_METHODS = ("client_secret_basic", "client_secret_post")
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
MAX_REDIRECT_URI_LENGTH = 2000


class ClientRegistrationError(ValueError):
    pass


def validate_client_id(session: Session, client_id: str) -> None:
    """A client_id can never be mistaken for a user.

    A client_credentials token carries `sub = client_id` (RFC 9068 §2.2), a user's token the
    user's subject, a UUID. A client whose id had the shape of a subject, or equalled one,
    would hold tokens a resource server could take for that user's (RFC 9068 §5).
    """
    if not CLIENT_ID_PATTERN.match(client_id):
        raise ClientRegistrationError("A client_id is 1-100 letters, digits or . _ ~ -")
    if _looks_like_uuid(client_id):
        raise ClientRegistrationError(
            "A client_id must not look like a UUID: user subjects are UUIDs (RFC 9068 §5)."
        )
    if subject_exists(session, client_id):
        raise ClientRegistrationError("A client_id must not be a user's subject (RFC 9068 §5).")


def _looks_like_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def validate_redirect_uri(uri: str) -> None:
    """A redirect URI a client may register (RFC 6749 §3.1.2, RFC 9700 §2.1 and §4.1.3).

    Absolute https, or http on a loopback host (RFC 8252 §7.3, local development); no
    fragment, no user info, no wildcard. Requests must then name it character for character.
    """
    if not uri or len(uri) > MAX_REDIRECT_URI_LENGTH:
        raise ClientRegistrationError("A redirect URI is 1-2000 characters.")
    if any(c <= " " or c > "~" for c in uri):
        raise ClientRegistrationError(f"Redirect URI {uri!r}: only printable ASCII, no spaces.")
    if "*" in uri:
        raise ClientRegistrationError(
            f"Redirect URI {uri!r}: no wildcards; URIs are matched exactly."
        )
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise ClientRegistrationError(f"Redirect URI {uri!r} is not a valid URI.") from exc
    if "#" in uri:
        raise ClientRegistrationError(f"Redirect URI {uri!r}: no fragment (RFC 6749 §3.1.2).")
    if not parts.hostname or "@" in parts.netloc:
        raise ClientRegistrationError(f"Redirect URI {uri!r}: needs a host and no user info.")
    loopback = parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS
    if parts.scheme != "https" and not loopback:
        raise ClientRegistrationError(
            f"Redirect URI {uri!r}: https, or http only on a loopback host (127.0.0.1, [::1])."
        )


@dataclass(frozen=True)
class ClientRecord:
    """A client as the protocol code sees it: an immutable snapshot of its registration that
    can be cached across requests (an ORM row cannot outlive its session)."""

    id: int
    client_id: str
    secret_hash: str
    grant_type_list: tuple[str, ...]
    scope_list: tuple[str, ...]
    audience_list: tuple[str, ...]
    can_introspect: bool
    name: str = ""
    client_type: str = "confidential"
    redirect_uri_list: tuple[str, ...] = ()
    third_party: bool = False
    # The client's revocation epoch when this snapshot was read: issuance re-checks it before
    # committing (epochs.py), so a snapshot cached from before `clients disable` issues nothing.
    token_epoch: int = 0
    # The secret replaced by `clients rotate-secret`, and until when it is still accepted.
    previous_secret_hash: str = ""
    previous_secret_expires_at: int = 0
    # The server's wall clock (tests move it), for the end of a rotation's overlap.
    clock: Callable[[], float] = field(default=time.time, compare=False, repr=False)

    @classmethod
    def from_model(cls, client: Client, clock: Callable[[], float] = time.time) -> ClientRecord:
        return cls(
            id=client.id,
            client_id=client.client_id,
            secret_hash=client.secret_hash,
            grant_type_list=tuple(client.grant_type_list),
            scope_list=tuple(client.scope_list),
            audience_list=tuple(client.audience_list),
            can_introspect=client.can_introspect,
            name=client.name,
            client_type=client.client_type,
            redirect_uri_list=tuple(client.redirect_uri_list),
            third_party=client.third_party,
            token_epoch=client.token_epoch,
            previous_secret_hash=client.previous_secret_hash or "",
            previous_secret_expires_at=client.previous_secret_expires_at or 0,
            clock=clock,
        )

    @property
    def is_public(self) -> bool:
        return self.client_type == "public"

    # -- what Authlib's client authentication and grants ask of a client (ClientMixin) --

    def check_client_secret(self, client_secret: str) -> bool:
        # A public client has no secret (an empty digest): nothing matches it. Both digests are
        # always compared, so the time taken does not tell which secret matched.
        current = bool(self.secret_hash) and matches_digest(client_secret, self.secret_hash)
        previous = matches_digest(client_secret, self.previous_secret_hash or "0" * 64)
        return current or (
            previous
            and bool(self.previous_secret_hash)
            and self.clock() < self.previous_secret_expires_at
        )

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        # RFC 6749 §2.1/§3.2.1: a confidential client authenticates with its secret; a public
        # client only identifies itself (`none`).
        if self.is_public:
            return method == "none"
        return method in CONFIDENTIAL_AUTH_METHODS

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_type_list

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        # RFC 9700 §4.1.3: exact string comparison with a registered URI.
        return redirect_uri in self.redirect_uri_list

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and self.check_grant_type("authorization_code")


class ClientDirectory:
    """Finds enabled clients, remembering each for `ttl` seconds per process.

    Every introspection authenticates its resource server; without this, that is one more
    query on the hottest path. A disabled client or changed scopes take effect within `ttl`.
    Only clients that exist are remembered, so random client_ids cannot fill the memory.
    """

    MAX_ENTRIES = 1024

    def __init__(
        self,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ):
        self._ttl = ttl
        self._clock = clock
        self._wall_clock = wall_clock
        self._entries: dict[str, tuple[float, ClientRecord]] = {}

    def find(self, session: Session, client_id: str, *, fresh: bool = False) -> ClientRecord | None:
        """The client's registration; `fresh` reads it from the database whatever is cached
        (a secret the cached snapshot refuses may be one rotated in since)."""
        now = self._clock()
        entry = self._entries.get(client_id)
        if not fresh and entry is not None and entry[0] > now:
            return entry[1]
        client = find_client(session, client_id)
        if client is None or client.disabled:
            self._entries.pop(client_id, None)
            return None
        record = ClientRecord.from_model(client, self._wall_clock)
        if self._ttl > 0:
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries.clear()
            self._entries[client_id] = (now + self._ttl, record)
        return record

    def cached(self, client_id: str) -> ClientRecord | None:
        """The remembered registration, if it is still fresh; None: `find` must read it."""
        entry = self._entries.get(client_id)
        if entry is not None and entry[0] > self._clock():
            return entry[1]
        return None

    def forget(self, client_id: str) -> None:
        """Drop a cached registration (its epoch moved: the client was disabled)."""
        self._entries.pop(client_id, None)


def disable_client(
    session: Session, client: Client, *, actor: str, now: int, steps: Steps = no_steps
) -> tuple[int, int]:
    """Disable a client and revoke every token and code issued to it, in one transaction: its
    epoch moves first, so an issuance that authenticated it before this commits is refused.
    Running it again changes nothing more. Returns (logins, access tokens) revoked."""
    client.disabled = True
    revoked = revoke_client_tokens(session, client.id, "client_disabled", now, steps)
    audit.record(
        session,
        "client_disabled",
        actor=actor,
        at=now,
        client_id=client.client_id,
        families_revoked=revoked[0],
        access_tokens_revoked=revoked[1],
    )
    steps("revoked")
    session.commit()
    return revoked


DEFAULT_SECRET_OVERLAP = 86400


def rotate_client_secret(
    session: Session, client_id: str, *, overlap: int, now: int, actor: str = "operator"
) -> tuple[Client, str]:
    """Give a confidential client a new secret; returns it and the secret, shown once.

    The secret it replaces keeps working for `overlap` seconds, so every deployment of the
    client can switch to the new one first; a secret older than that (from a rotation before)
    stops working at once. Only digests are stored.
    """
    if overlap < 0:
        raise ClientRegistrationError("The overlap is a number of seconds, 0 or more.")
    client = find_client(session, client_id)
    if client is None:
        raise ClientRegistrationError(f"No client {client_id!r}.")
    if client.client_type == "public" or not client.secret_hash:
        raise ClientRegistrationError(f"The client {client_id!r} is public: it has no secret.")
    secret = secrets.token_urlsafe(32)
    client.previous_secret_hash = client.secret_hash if overlap else None
    client.previous_secret_expires_at = now + overlap if overlap else None
    client.secret_hash = sha256_hex(secret)
    audit.record(
        session,
        "client_secret_rotated",
        actor=actor,
        at=now,
        client_id=client_id,
        previous_secret_expires_at=client.previous_secret_expires_at,
    )
    session.commit()
    return client, secret


def _check_resource_server(grant_types: Sequence[str], audiences: Sequence[str]) -> None:
    """An introspecting client is a resource server: its `audiences` are the resource
    identifiers it serves, and introspection answers it only about access tokens for them
    (RFC 7662 §4). So it needs at least one, and uses no grant: were it also a client of other
    APIs, the audiences it may target would become audiences it may introspect. Its own calls
    need a client of their own."""
    if not audiences:
        raise ClientRegistrationError(
            "A client that may introspect needs the audiences it serves (--audiences, e.g. "
            "urn:tessera:notes): it learns only about access tokens for them."
        )
    if grant_types:
        raise ClientRegistrationError(
            "A client that may introspect uses no grant type; register a separate client for "
            "the resource server's own calls."
        )


def set_served_audiences(
    session: Session, client_id: str, audiences: Sequence[str], *, now: int | None = None
) -> Client:
    """Set the audiences an introspecting client (a resource server) serves; it keeps no grant
    type (see _check_resource_server). For clients registered before introspection needed
    them."""
    client = find_client(session, client_id)
    if client is None:
        raise ClientRegistrationError(f"No client {client_id!r}.")
    if not client.can_introspect:
        raise ClientRegistrationError(f"The client {client_id!r} may not introspect.")
    _check_resource_server([], audiences)
    now = int(time.time()) if now is None else now
    client.audiences = " ".join(dict.fromkeys(audiences))
    client.grant_types = ""
    audit.record(
        session,
        "client_updated",
        actor="operator",
        at=now,
        client_id=client_id,
        audiences=client.audiences,
    )
    session.commit()
    return client


def public_client_origins(session: Session) -> frozenset[str]:
    """The origins of the redirect URIs of enabled public clients: the browser apps that may
    call the token and revocation endpoints from their pages (CORS)."""
    rows = session.scalars(
        select(Client.redirect_uris).where(
            Client.client_type == "public", Client.disabled.is_(False)
        )
    )
    origins = (origin_of(uri) for uris in rows for uri in uris.split())
    return frozenset(o for o in origins if o is not None)


def register_client(
    session: Session,
    client_id: str,
    *,
    grant_types: Sequence[str],
    scopes: Sequence[str],
    audiences: Sequence[str],
    can_introspect: bool = False,
    name: str = "",
    secret: str | None = None,
    client_type: str = "confidential",
    redirect_uris: Sequence[str] = (),
    third_party: bool = False,
    now: int | None = None,
) -> tuple[Client, str | None]:
    """Store a new client; returns it and its secret, which is never stored nor shown again
    (None for a public client, which has none).

    `secret` is for demo data and tests only: real clients get 256 random bits. A
    `third_party` app asks each user's consent at the authorization endpoint, which only the
    authorization code grant has.
    """
    validate_client_id(session, client_id)
    unknown = set(grant_types) - set(SUPPORTED_GRANT_TYPES)
    if unknown:
        raise ClientRegistrationError(f"Unsupported grant types: {', '.join(sorted(unknown))}")
    if client_type not in CLIENT_TYPES:
        raise ClientRegistrationError(f"A client is one of: {', '.join(CLIENT_TYPES)}.")
    if client_type == "public":
        if not set(grant_types) <= set(PUBLIC_GRANT_TYPES):
            raise ClientRegistrationError(
                f"A public client may only use the grant types {' and '.join(PUBLIC_GRANT_TYPES)}."
            )
        if can_introspect or secret is not None:
            raise ClientRegistrationError("A public client has no secret and cannot introspect.")
    if can_introspect:
        _check_resource_server(grant_types, audiences)
    for uri in redirect_uris:
        validate_redirect_uri(uri)
    if "authorization_code" in grant_types and not redirect_uris:
        raise ClientRegistrationError("The authorization_code grant needs redirect URIs.")
    if redirect_uris and "authorization_code" not in grant_types:
        raise ClientRegistrationError("Redirect URIs are for the authorization_code grant only.")
    if third_party and set(grant_types) - set(PUBLIC_GRANT_TYPES):
        # The password grant would hand the user's password to the app; client_credentials
        # acts for no user: neither has a consent screen.
        raise ClientRegistrationError(
            "A third-party app may only use the grant types "
            f"{' and '.join(PUBLIC_GRANT_TYPES)} (consent happens at the authorization endpoint)."
        )
    if find_client(session, client_id) is not None:
        raise ClientRegistrationError(f"The client {client_id!r} already exists.")
    if client_type == "public":
        secret_hash = ""
    else:
        secret = secret or secrets.token_urlsafe(32)
        secret_hash = sha256_hex(secret)
    now = int(time.time()) if now is None else now
    client = Client(
        # A random first epoch: the self-contained tokens of a client deleted earlier under
        # this client_id carry its epochs, which this one then never holds
        # (auth_server/self_contained.py). Room for 2**30 revocations below the column's limit.
        token_epoch=secrets.randbelow(1 << 30),
        client_id=client_id,
        name=name,
        client_type=client_type,
        secret_hash=secret_hash,
        grant_types=" ".join(dict.fromkeys(grant_types)),
        scopes=" ".join(dict.fromkeys(scopes)),
        audiences=" ".join(dict.fromkeys(audiences)),
        redirect_uris=" ".join(dict.fromkeys(redirect_uris)),
        can_introspect=can_introspect,
        third_party=third_party,
        disabled=False,
        created_at=now,
    )
    session.add(client)
    audit.record(
        session,
        "client_created",
        actor="operator",
        at=now,
        client_id=client_id,
        client_type=client_type,
        third_party=third_party,
    )
    session.commit()
    return client, secret
