"""RFC 7662 token introspection client for resource servers.

One instance holds one pool of keep-alive connections (shared/guard/introspection_http.py) and is
shared by every request (and thread) of a
process, so keep-alive connections to the authorization server are reused. Anything
other than a well-formed answer from the authorization server raises ``IntrospectionUnavailable``
so the caller can answer 503: an outage must never look like a valid or an invalid token.
Token values are never logged, only a fingerprint.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlencode

from shared.guard.introspection_http import (
    ConnectFailed,
    ConnectionDropped,
    KeepAlivePoster,
    ResponseTooLarge,
)
from shared.protocol import json_input
from shared.protocol.basic_auth import basic_credentials_header
from shared.protocol.digests import fingerprint
from shared.service.secret_file import SecretFile

log = logging.getLogger("tessera.introspection")

# Outcomes passed to ``on_call``: a small fixed set, so they can be metric labels.
ACTIVE = "active"
INACTIVE = "inactive"
TIMEOUT = "timeout"
CONNECTION_ERROR = "connection_error"
SERVER_ERROR = "server_error"
CREDENTIALS_REJECTED = "credentials_rejected"
BAD_RESPONSE = "bad_response"

OnCall = Callable[[float, str], None]


class IntrospectionError(Exception):
    """Base class of every error the introspection client raises."""


class IntrospectionUnavailable(IntrospectionError):
    """The authorization server gave no usable answer; the caller should answer 503."""

    def __init__(self, message: str, *, outcome: str) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.duration: float | None = None


class IntrospectionCredentialsRejected(IntrospectionUnavailable):
    """The authorization server refused our own client credentials (HTTP 401/403)."""


@dataclass(frozen=True, slots=True)
class IntrospectionResult:
    """The parts of an RFC 7662 §2.2 response a resource server decides on."""

    active: bool
    scope: tuple[str, ...] = ()
    client_id: str | None = None
    username: str | None = None
    sub: str | None = None
    aud: tuple[str, ...] = ()
    iss: str | None = None
    exp: int | None = None
    iat: int | None = None
    jti: str | None = None
    token_use: str | None = None
    # RFC 9449 §6.2: `cnf.jkt`, the thumbprint of the DPoP key the token is bound to.
    cnf_jkt: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    duration: float = field(default=0.0, compare=False)

    @classmethod
    def from_response(cls, data: Any, duration: float = 0.0) -> IntrospectionResult:
        """Build from a decoded JSON body; ValueError if it is not a valid RFC 7662 answer."""
        if not isinstance(data, dict) or not isinstance(data.get("active"), bool):
            raise ValueError("the response has no boolean 'active' member")
        raw = MappingProxyType(data)
        if not data["active"]:
            # RFC 7662 §2.2: for an inactive token nothing else may be relied upon.
            return cls(active=False, raw=raw, duration=duration)
        return cls(
            active=True,
            scope=tuple(_string(data, "scope").split()) if data.get("scope") else (),
            client_id=_optional_string(data, "client_id"),
            username=_optional_string(data, "username"),
            sub=_optional_string(data, "sub"),
            aud=_audiences(data.get("aud")),
            iss=_optional_string(data, "iss"),
            exp=_optional_time(data, "exp"),
            iat=_optional_time(data, "iat"),
            jti=_optional_string(data, "jti"),
            token_use=_optional_string(data, "token_use"),
            cnf_jkt=_confirmation_jkt(data.get("cnf")),
            raw=raw,
            duration=duration,
        )


def _string(data: Mapping[str, Any], name: str) -> str:
    value = data[name]
    if not isinstance(value, str):
        raise ValueError(f"'{name}' is not a string")
    return value


def _optional_string(data: Mapping[str, Any], name: str) -> str | None:
    return None if data.get(name) is None else _string(data, name)


def _optional_time(data: Mapping[str, Any], name: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    # A malformed expiry must fail closed (503), not be skipped as if it were absent; 1e999
    # (infinity to json.loads) and NaN are malformed too, not "never expires".
    number = json_input.finite_number(value)
    if number is None:
        raise ValueError(f"'{name}' is not a finite number")
    return value if isinstance(value, int) else int(number)


def _confirmation_jkt(value: Any) -> str | None:
    # RFC 7800 §3.1: an object of confirmation methods; only jkt (RFC 9449) is understood. A
    # malformed one fails closed (503) rather than letting a bound token pass as a bearer one.
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError("'cnf' is not an object")
    jkt = _optional_string(value, "jkt")
    # Bound by some other method (mTLS x5t#S256...): a binding no DPoP proof can satisfy.
    return "" if jkt is None and value else jkt


def _audiences(value: Any) -> tuple[str, ...]:
    # RFC 7519 §4.1.3 (used by RFC 7662 §2.2): one string or an array of strings.
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise ValueError("'aud' is neither a string nor an array of strings")


class IntrospectionClient:
    """Calls the authorization server's introspection endpoint with HTTP Basic client auth.

    Each call ends within ``total_timeout`` seconds, connecting, retrying and a peer that
    trickles its answer included, and reads at most ``max_response_bytes`` of the answer.
    """

    def __init__(
        self,
        introspection_url: str,
        client_id: str,
        client_secret: str | SecretFile,
        connect_timeout: float = 1.0,
        read_timeout: float = 2.0,
        pool_size: int = 10,
        *,
        total_timeout: float = 3.0,
        max_response_bytes: int = 64 * 1024,
        on_call: OnCall | None = None,
        verify: bool | str = True,
    ) -> None:
        if not client_id or not client_secret:
            raise ValueError("client_id and client_secret are required")
        # A SecretFile is followed as it is rewritten (secret rotation), without a restart.
        self._secret_file = client_secret if isinstance(client_secret, SecretFile) else None
        self._secret: str = (
            client_secret.current() if isinstance(client_secret, SecretFile) else client_secret
        )
        if total_timeout <= 0 or max_response_bytes < 1:
            raise ValueError("total_timeout and max_response_bytes must be positive")
        self.introspection_url = introspection_url
        self.client_id = client_id
        self.timeout = (connect_timeout, read_timeout)
        self.total_timeout = total_timeout
        self.max_response_bytes = max_response_bytes
        self.on_call = on_call
        # RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding, so a ':' in
        # either cannot shift the split. Computed once, and again only when the secret changes.
        self._authorization = basic_credentials_header(client_id, self._secret)
        # Neither requests nor urllib3: the HTTP of this one POST cost a third of the resource
        # server's time on a protected request through them (shared/guard/introspection_http.py).
        self._poster = KeepAlivePoster(
            introspection_url,
            {
                "Accept": "application/json",
                # Not compressed: the answer is parsed as it arrives.
                "Accept-Encoding": "identity",
                "Content-Type": "application/x-www-form-urlencoded",
                "User-Agent": "tessera-introspection/1",
            },
            pool_size,
            verify,
        )

    def close(self) -> None:
        self._poster.close()

    def __enter__(self) -> IntrospectionClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def introspect(self, token: str, request_id: str | None = None) -> IntrospectionResult:
        """Ask the authorization server about ``token``; raise IntrospectionUnavailable if it
        cannot tell."""
        started = time.monotonic()
        try:
            data = self._fetch(token, request_id, started + self.total_timeout)
            duration = time.monotonic() - started
            try:
                result = IntrospectionResult.from_response(data, duration)
            except ValueError as exc:
                log.error(
                    "introspection response is not RFC 7662: %s (token %s, request %s)",
                    exc,
                    fingerprint(token),
                    request_id,
                )
                raise IntrospectionUnavailable(str(exc), outcome=BAD_RESPONSE) from exc
        except IntrospectionUnavailable as exc:
            exc.duration = time.monotonic() - started
            self._notify(exc.duration, exc.outcome)
            raise
        self._notify(duration, ACTIVE if result.active else INACTIVE)
        return result

    def _fetch(self, token: str, request_id: str | None, deadline_at: float) -> Any:
        form = urlencode({"token": token, "token_type_hint": "access_token"}).encode()
        headers = self._request_headers(request_id)
        status, body = self._post(form, headers, token, request_id, deadline_at)
        if status in (401, 403) and self._secret_file is not None:
            # The secret may have been rotated: the file rewritten within the stat's
            # granularity, or by another thread's read since this request set out. One more
            # try with the new secret, if there is one, before a 503.
            self._follow_secret(True)
            retry_headers = self._request_headers(request_id)
            if retry_headers != headers:
                status, body = self._post(form, retry_headers, token, request_id, deadline_at)
        if status == 200:
            try:
                return json_input.loads(body)
            except ValueError as exc:
                log.error(
                    "introspection endpoint answered 200 with a body that is not JSON "
                    "(token %s, request %s)",
                    fingerprint(token),
                    request_id,
                )
                raise IntrospectionUnavailable("non-JSON response", outcome=BAD_RESPONSE) from exc
        if status in (401, 403):
            # Our own client credentials are wrong or lack the introspection right: every
            # request will fail until an operator fixes the configuration, so say so loudly.
            log.error(
                "the authorization server rejected this resource server's client credentials "
                "(HTTP %s from %s as client_id %r): check RESOURCE_CLIENT_ID and "
                "RESOURCE_CLIENT_SECRET (or _FILE) and that the client may introspect (request %s)",
                status,
                self.introspection_url,
                self.client_id,
                request_id,
            )
            raise IntrospectionCredentialsRejected(
                f"credentials rejected (HTTP {status})", outcome=CREDENTIALS_REJECTED
            )
        if status == 429 or status >= 500:
            log.warning(
                "introspection endpoint unavailable: HTTP %s (token %s, request %s)",
                status,
                fingerprint(token),
                request_id,
            )
            raise IntrospectionUnavailable(f"HTTP {status}", outcome=SERVER_ERROR)
        # Redirects (not followed: they would carry our credentials elsewhere), 404, 400...:
        # a misconfigured URL or a broken server, which no retry by the client will fix.
        log.error(
            "introspection endpoint %s answered unexpected HTTP %s (request %s)",
            self.introspection_url,
            status,
            request_id,
        )
        raise IntrospectionUnavailable(f"unexpected HTTP {status}", outcome=BAD_RESPONSE)

    def _request_headers(self, request_id: str | None) -> dict[str, str]:
        """The headers that are not the same on every call: credentials and request id."""
        if self._secret_file is not None:
            self._follow_secret(False)
        headers = {"Authorization": self._authorization}
        if request_id is not None:
            headers["X-Request-ID"] = request_id
        return headers

    def _follow_secret(self, force: bool) -> bool:
        """Take the secret file's current value; True if it differs from the one in use."""
        assert self._secret_file is not None
        if force:
            self._secret_file.reload()
        secret = self._secret_file.current()
        if secret == self._secret:
            return False
        # One assignment of a new str: threads reading the old one meanwhile stay consistent.
        self._secret = secret
        self._authorization = basic_credentials_header(self.client_id, secret)
        return True

    def _post(
        self,
        form: bytes,
        headers: dict[str, str],
        token: str,
        request_id: str | None,
        deadline_at: float,
    ) -> tuple[int, bytes]:
        """(status, body) of the introspection POST; the body is read only for a 200."""
        connect_timeout, read_timeout = self.timeout
        for attempt in (1, 2):
            try:
                return self._poster.post(
                    form,
                    headers,
                    connect_timeout=connect_timeout,
                    read_timeout=read_timeout,
                    deadline_at=deadline_at,
                    max_body=self.max_response_bytes,
                    fresh=attempt == 2,
                )
            except ConnectFailed as exc:
                # Refused, unresolvable, or TLS failed: a second attempt right away would fail
                # the same way.
                raise self._unavailable(CONNECTION_ERROR, exc, token, request_id) from exc
            except TimeoutError as exc:
                # Connect or read timeout, or the call's deadline: the server is slow or
                # unreachable, and a retry would double the time a client waits for its 503.
                raise self._unavailable(TIMEOUT, exc, token, request_id) from exc
            except ResponseTooLarge:
                log.error(
                    "introspection endpoint answered more than %s bytes (token %s, request %s)",
                    self.max_response_bytes,
                    fingerprint(token),
                    request_id,
                )
                raise IntrospectionUnavailable("response too large", outcome=BAD_RESPONSE) from None
            except ConnectionDropped as exc:
                if attempt == 2:
                    raise self._unavailable(CONNECTION_ERROR, exc, token, request_id) from exc
                # Most often a pooled keep-alive connection the authorization server closed
                # (it restarted). Introspection is read-only, so one immediate retry on a new
                # connection is safe.
                self._log_retry(exc, request_id)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _log_retry(exc: Exception, request_id: str | None) -> None:
        log.info(
            "introspection connection failed, retrying once: %s (request %s)",
            type(exc).__name__,
            request_id,
        )

    def _unavailable(
        self, outcome: str, exc: Exception, token: str, request_id: str | None
    ) -> IntrospectionUnavailable:
        # The exception text names the URL only, never the form body, so it is safe to log.
        log.warning(
            "introspection endpoint unreachable (%s): %s (token %s, request %s)",
            outcome,
            exc,
            fingerprint(token),
            request_id,
        )
        return IntrospectionUnavailable(f"{outcome}: {type(exc).__name__}", outcome=outcome)

    def _notify(self, duration: float, outcome: str) -> None:
        if self.on_call is None:
            return
        try:
            self.on_call(duration, outcome)
        except Exception:
            # A broken metrics hook must not turn a good answer into an error.
            log.exception("introspection on_call hook failed")
