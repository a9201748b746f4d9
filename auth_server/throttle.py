"""Login brute-force protection for the password grant.

Failed logins are counted per username and per client IP in a moving window, in storage that
all replicas share (RATELIMIT_STORAGE_URI: Redis in compose, process memory in the embedded
default). Once a limit is reached the request is refused with 429 and Retry-After *before* the
password is hashed, so an attacker cannot make the server burn Argon2 time either.
"""

from __future__ import annotations

import logging
import math
import time

from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from auth_server.errors import TooManyRequestsError
from shared.digests import fingerprint

log = logging.getLogger("tessera.auth.throttle")


class LoginThrottle:
    def __init__(self, storage_uri: str, per_username: str, per_ip: str, on_throttled=None):
        self.on_throttled = on_throttled
        self._limiter = MovingWindowRateLimiter(storage_from_string(storage_uri))
        self._per_username = parse(per_username)
        self._per_ip = parse(per_ip)

    def _keys(self, username: str, ip: str | None):
        # usernames are folded (Alice == alice) and fingerprinted: no raw input in storage keys
        yield self._per_username, "login-user", fingerprint(username.casefold())
        if ip:
            yield self._per_ip, "login-ip", ip

    def check(self, username: str, ip: str | None) -> None:
        try:
            for item, *key in self._keys(username, ip):
                if not self._limiter.test(item, *key):
                    reset_at, _ = self._limiter.get_window_stats(item, *key)
                    # A log line, not an audit row: a refused attempt must stay cheap.
                    log.warning(
                        "login throttled",
                        extra={"limit": key[0], "user": fingerprint(username.casefold()), "ip": ip},
                    )
                    if self.on_throttled is not None:
                        self.on_throttled(key[0])
                    raise TooManyRequestsError(
                        "Too many failed logins; try again later.",
                        retry_after=math.ceil(reset_at - time.time()),
                    )
        except TooManyRequestsError:
            raise
        except Exception:  # noqa: BLE001 - storage down must not lock every user out
            log.exception("login throttle storage unavailable; allowing the attempt")

    def failed(self, username: str, ip: str | None) -> None:
        try:
            for item, *key in self._keys(username, ip):
                self._limiter.hit(item, *key)
        except Exception:  # noqa: BLE001
            log.exception("login throttle storage unavailable; failure not counted")
