"""Login throttling: password guessing is bounded, and nobody can lock another user out.

Every password check (password grant, login page, `/account/password`, the account page's
sign-in and password change) first takes one unit from four counters, atomically and *before*
the password is hashed:

- ``user-ip``: this username from this address (LOGIN_FAILURES_PER_USERNAME_AND_IP, tight);
- ``ip``: this address, any username (LOGIN_FAILURES_PER_IP);
- ``user``: this username from any address (LOGIN_FAILURES_PER_USERNAME, much higher);
- ``user-ip-long``: this username from this address over the ``user`` window; it has no limit
  of its own and only says whether this address has failed for this user lately.

A check that would take a counter past its limit is refused with 429 and Retry-After, and
takes nothing. The ``user`` limit, once reached, refuses only addresses that already failed for
that username in its window: a guesser spread over many addresses gets at most one more guess
per address per window, and the real user, whose address has not failed, still gets in. A
correct password gives its units back, so the counters hold failures (plus checks in flight),
and a NAT full of users who type their passwords right is never throttled.

Counters are fixed windows (``window_start`` = now rounded down to the window length) in the
authorization server's database by default, one upsert transaction per check, so the limit
holds exactly across every thread, worker and replica; or in Redis (RATELIMIT_STORAGE_URI).
If the storage fails, the check is allowed and logged: a broken counter store must not lock
every user out, and the password hash still has to be right.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from auth_server.models import LoginAttempt
from auth_server.protocol.errors import TooManyRequestsError
from shared.protocol.digests import fingerprint
from shared.service.settings import ConfigurationError

log = logging.getLogger("tessera.auth.throttle")

DATABASE_STORAGE = "database"
_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_LIMIT = re.compile(r"^\s*(\d+)\s*(?:per|/)\s*(\d+)?\s*(second|minute|hour|day)s?\s*$", re.I)


@dataclass(frozen=True)
class Limit:
    """`count` password checks per fixed window of `seconds`."""

    count: int
    seconds: int

    @classmethod
    def parse(cls, text: str) -> Limit:
        """'10 per 5 minutes', '100 per hour', '3/minute'."""
        match = _LIMIT.match(text)
        if not match or int(match.group(1)) < 1 or match.group(2) == "0":
            raise ValueError(f"not a limit like '10 per 5 minutes': {text!r}")
        seconds = int(match.group(2) or 1) * _UNITS[match.group(3).lower()]
        return cls(int(match.group(1)), seconds)


@dataclass(frozen=True)
class Counter:
    scope: str
    key_fingerprint: str
    window_start: int
    expires_at: int


def address_key(ip: str | None) -> str:
    """What one client address counts as: an IPv4 address, or an IPv6 /64 (one subscriber's
    network: anyone holding one has 2^64 addresses, so counting single IPv6 addresses would
    give each guesser unlimited fresh addresses)."""
    if not ip:
        return "unknown"
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def _key(*parts: str) -> str:
    # NUL cannot appear in a username (USERNAME_PATTERN) nor an address: parts never run together.
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogateescape")).hexdigest()


class DatabaseCounters:
    """Counters in the authorization server's own database (table login_attempts).

    Each check is one short transaction on its own connection, never the request's session:
    it commits before the hash starts, and a request that fails later cannot roll it back.
    PostgreSQL's upsert locks each row until commit, SQLite takes the database's write lock
    (BEGIN IMMEDIATE, shared/service/database.py), so concurrent checks see each other's counts.
    """

    def __init__(self, engine: Engine):
        self.engine = engine
        dialects = {"sqlite": sqlite, "postgresql": postgresql}
        if engine.dialect.name not in dialects:
            raise ConfigurationError(
                f"login counters in the database need SQLite or PostgreSQL, not "
                f"{engine.dialect.name}; set RATELIMIT_STORAGE_URI to a Redis URL"
            )
        self._insert = dialects[engine.dialect.name].insert

    def _increment(self, counter: Counter):
        table = LoginAttempt.__table__
        statement = self._insert(table).values(
            scope=counter.scope,
            key_fingerprint=counter.key_fingerprint,
            window_start=counter.window_start,
            expires_at=counter.expires_at,
            count=1,
        )
        return statement.on_conflict_do_update(
            index_elements=[table.c.scope, table.c.key_fingerprint, table.c.window_start],
            set_={"count": table.c.count + 1},
        ).returning(table.c.count)

    def add(self, counters: Sequence[Counter], decide: Callable[[list[int]], object]):
        """Add one to every counter; keep the additions only if `decide(counts)` is falsy.
        Returns what `decide` returned."""
        with self.engine.connect() as conn:
            # Always the same order of scopes: two checks never wait on each other in a cycle.
            counts = [conn.execute(self._increment(c)).scalar_one() for c in counters]
            refusal = decide(counts)
            if refusal:
                conn.rollback()
            else:
                conn.commit()
        return refusal

    def subtract(self, counters: Sequence[Counter]) -> None:
        table = LoginAttempt.__table__
        with self.engine.begin() as conn:
            for c in counters:
                row = (
                    table.c.scope == c.scope,
                    table.c.key_fingerprint == c.key_fingerprint,
                    table.c.window_start == c.window_start,
                )
                conn.execute(update(table).where(*row).values(count=table.c.count - 1))
                # A counter back at zero holds nothing: successful logins leave no rows (the
                # next check's upsert makes it again). Failures stay until `tokens purge`.
                conn.execute(delete(table).where(*row, table.c.count <= 0))


class RedisCounters:
    """Counters in Redis: INCR in a Lua script (atomic), undone with DECR when refused.

    Between the INCR and the DECR of a refused check another check may see the higher count
    and be refused too; none is ever let through above the limit. One Redis server (the keys
    of one check are not in one cluster slot)."""

    _ADD = """
    local counts = {}
    for i, key in ipairs(KEYS) do
      counts[i] = redis.call('INCR', key)
      if counts[i] == 1 then redis.call('EXPIREAT', key, ARGV[i]) end
    end
    return counts
    """
    _SUBTRACT = """
    for _, key in ipairs(KEYS) do
      if tonumber(redis.call('GET', key) or '0') > 0 then redis.call('DECR', key) end
    end
    """

    def __init__(self, url: str):
        import redis

        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._add = client.register_script(self._ADD)
        self._subtract = client.register_script(self._SUBTRACT)

    @staticmethod
    def _name(c: Counter) -> str:
        return f"tessera:login:{c.scope}:{c.key_fingerprint}:{c.window_start}"

    def add(self, counters: Sequence[Counter], decide: Callable[[list[int]], object]):
        counts = self._add(
            keys=[self._name(c) for c in counters], args=[c.expires_at + 1 for c in counters]
        )
        refusal = decide([int(n) for n in counts])
        if refusal:
            self.subtract(counters)
        return refusal

    def subtract(self, counters: Sequence[Counter]) -> None:
        self._subtract(keys=[self._name(c) for c in counters])


def counter_store(storage_uri: str, engine: Engine) -> DatabaseCounters | RedisCounters:
    if storage_uri == DATABASE_STORAGE:
        return DatabaseCounters(engine)
    if storage_uri.startswith(("redis://", "rediss://", "unix://")):
        return RedisCounters(storage_uri)
    raise ConfigurationError(
        f"RATELIMIT_STORAGE_URI must be `{DATABASE_STORAGE}` or a redis:// URL"
    )


@dataclass(frozen=True)
class _Refusal:
    limit: str  # the metric label: login-user-ip, login-ip, login-user
    counter: Counter


class PasswordCheck:
    """Handed to the `with` block of `LoginThrottle.attempt`; call `succeeded()` when the
    password was right, so the check gives its units back."""

    def __init__(self) -> None:
        self.success = False

    def succeeded(self) -> None:
        self.success = True


class LoginThrottle:
    def __init__(
        self,
        store: DatabaseCounters | RedisCounters,
        *,
        per_username_and_ip: Limit,
        per_ip: Limit,
        per_username: Limit,
        clock: Callable[[], float] = time.time,
        on_throttled: Callable[[str], None] | None = None,
    ):
        self.store = store
        self.per_username_and_ip = per_username_and_ip
        self.per_ip = per_ip
        self.per_username = per_username
        self.clock = clock
        self.on_throttled = on_throttled

    @staticmethod
    def _counter(scope: str, limit: Limit, now: int, *parts: str) -> Counter:
        start = now - now % limit.seconds
        return Counter(scope, _key(*parts), start, start + limit.seconds)

    @contextmanager
    def attempt(self, username: str, ip: str | None) -> Iterator[PasswordCheck]:
        """Count one password check before it runs: raises TooManyRequestsError (429) if a
        limit is reached. A `with` block that calls `succeeded()`, or raises, gives the units
        back; one that ends normally without `succeeded()` leaves them counted: a failure."""
        now = int(self.clock())
        user = username.casefold()  # Alice == alice: one counter
        address = address_key(ip)
        counters = [
            self._counter("user-ip", self.per_username_and_ip, now, user, address),
            self._counter("ip", self.per_ip, now, address),
            self._counter("user-ip-long", self.per_username, now, user, address),
            self._counter("user", self.per_username, now, user),
        ]

        def decide(counts: list[int]) -> _Refusal | None:
            pair, per_ip, pair_long, per_user = counts
            if pair > self.per_username_and_ip.count:
                return _Refusal("login-user-ip", counters[0])
            if per_ip > self.per_ip.count:
                return _Refusal("login-ip", counters[1])
            # Past the username's limit, only an address with no failure for it goes on.
            if per_user > self.per_username.count and pair_long > 1:
                return _Refusal("login-user", counters[3])
            return None

        try:
            refusal = self.store.add(counters, decide)
        except Exception:  # noqa: BLE001 - storage down must not lock every user out
            log.exception("login throttle storage unavailable; allowing the attempt")
            refusal, counters = None, []
        if refusal is not None:
            # A log line, not an audit row: a refused attempt must stay cheap.
            log.warning(
                "login throttled",
                extra={"limit": refusal.limit, "user": fingerprint(user), "ip": ip},
            )
            if self.on_throttled is not None:
                self.on_throttled(refusal.limit)
            raise TooManyRequestsError(
                "Too many failed logins; try again later.",
                retry_after=math.ceil(refusal.counter.expires_at - self.clock()),
            )
        check = PasswordCheck()
        try:
            yield check
        except BaseException:
            self._give_back(counters)
            raise
        if check.success:
            self._give_back(counters)

    def _give_back(self, counters: Sequence[Counter]) -> None:
        if not counters:
            return
        try:
            self.store.subtract(counters)
        except Exception:  # noqa: BLE001
            log.exception("login throttle storage unavailable; units not given back")
