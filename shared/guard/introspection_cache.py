"""An opt-in, bounded cache of introspection answers, kept exact by revocation events.

``CachingIntrospector`` stands where TokenGuard expects an IntrospectionClient. It answers
from the cache only while the revocation channel is live (``RevocationSubscriber`` says so,
and no event is waiting unread on its connection); otherwise it introspects, as the default
mode always does. Entries are keyed by the token's SHA-256, never the token, and remember what
a revocation event can name: jti, sid (the login), sub, client_id and the signing kid.

Exactness: an answer fetched while an event arrived is not stored (``Ticket``), because the
event may have been about it and have found nothing to drop yet. Everything the event names
is dropped at once; on any doubt (a lost connection, an event that does not parse) everything
is. See docs/revocation-events.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from shared.guard.introspection import IntrospectionClient, IntrospectionResult
from shared.protocol import revocation_events as events

# Outcomes of a lookup, for the metric: hit, miss (introspected, maybe stored) and bypass
# (introspected because the channel is not live, nothing stored).
HIT = "hit"
MISS = "miss"
BYPASS = "bypass"


@dataclass(slots=True)
class _Entry:
    result: IntrospectionResult
    expires_at: float
    tags: tuple[events.Target, ...]


class IntrospectionCache:
    """LRU map token digest -> introspection answer, with an index by what events name."""

    def __init__(
        self,
        ttl: float,
        negative_ttl: float,
        max_entries: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl <= 0 or negative_ttl < 0 or max_entries < 1:
            raise ValueError("ttl and max_entries must be positive, negative_ttl not negative")
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._index: dict[events.Target, set[bytes]] = {}
        # Moves on every event and flush; an answer fetched across a move is not stored.
        self._generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    def ticket(self) -> int:
        return self._generation

    def get(self, key: bytes) -> IntrospectionResult | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.expires_at <= self._clock():
                self._remove(key)
                return None
            self._entries.move_to_end(key)
            return entry.result

    def put(self, key: bytes, token: str, result: IntrospectionResult, ticket: int) -> bool:
        """Store ``result`` unless an event or flush happened since ``ticket`` was taken."""
        now = self._clock()
        if result.active:
            expires_at = now + self.ttl
            # Never past the token's own expiry: the guard re-checks exp anyway, but an expired
            # entry would only take a slot.
            if result.exp is not None:
                expires_at = min(expires_at, result.exp)
            tags = _tags(token, result)
        else:
            expires_at = now + self.negative_ttl
            tags = ()
        if expires_at <= now:
            return False
        with self._lock:
            if ticket != self._generation:
                return False
            if key in self._entries:
                self._remove(key)
            self._entries[key] = _Entry(result, expires_at, tags)
            for tag in tags:
                self._index.setdefault(tag, set()).add(key)
            while len(self._entries) > self.max_entries:
                self._remove(next(iter(self._entries)))
        return True

    def drop(self, targets: list[events.Target]) -> int:
        """Forget every entry a revocation event names; returns how many."""
        with self._lock:
            self._generation += 1
            keys = set()
            for target in targets:
                keys |= self._index.get(target, set())
            for key in keys:
                self._remove(key)
            return len(keys)

    def flush(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()
            self._index.clear()

    def _remove(self, key: bytes) -> None:
        entry = self._entries.pop(key)
        for tag in entry.tags:
            keys = self._index.get(tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._index[tag]


def token_key(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def _tags(token: str, result: IntrospectionResult) -> tuple[events.Target, ...]:
    tags: list[events.Target] = []
    if result.jti:
        tags.append((events.TOKEN, result.jti))
    sid = result.raw.get("sid")
    if isinstance(sid, str) and sid:
        tags.append((events.SESSION, sid))
    if result.sub:
        tags.append((events.USER, result.sub))
    if result.client_id:
        tags.append((events.CLIENT, result.client_id))
    kid = _kid(token)
    if kid:
        tags.append((events.SIGNING_KEY, kid))
    return tuple(tags)


def _kid(token: str) -> str | None:
    """The `kid` of a JWT's header. Unverified, and safe so: the authorization server has just
    said this exact string is its active token, so the header is the one it signed."""
    header = token.split(".", 1)[0]
    try:
        data = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (ValueError, binascii.Error):
        return None
    kid = data.get("kid") if isinstance(data, dict) else None
    return kid if isinstance(kid, str) else None


class ChannelState:
    """What the cache needs to know about the revocation channel: whether it is live now."""

    def is_live(self) -> bool:  # pragma: no cover - interface
        raise NotImplementedError


class CachingIntrospector:
    """IntrospectionClient's ``introspect`` through an IntrospectionCache."""

    def __init__(
        self,
        client: IntrospectionClient,
        cache: IntrospectionCache,
        channel: ChannelState,
        on_lookup: Callable[[str], None] = lambda _outcome: None,
    ) -> None:
        self.client = client
        self.cache = cache
        self.channel = channel
        self._on_lookup = on_lookup

    def introspect(self, token: str, request_id: str | None = None) -> IntrospectionResult:
        if not self.channel.is_live():
            self._on_lookup(BYPASS)
            return self.client.introspect(token, request_id=request_id)
        key = token_key(token)
        cached = self.cache.get(key)
        if cached is not None:
            self._on_lookup(HIT)
            return cached
        ticket = self.cache.ticket()
        result = self.client.introspect(token, request_id=request_id)
        # A channel that broke during the call may have lost the event about this token.
        if self.channel.is_live():
            self.cache.put(key, token, result, ticket)
        self._on_lookup(MISS)
        return result

    def close(self) -> None:
        self.client.close()
