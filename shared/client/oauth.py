"""An OAuth 2.0 client that keeps a user logged in: it sends the bearer token, refreshes it when
a resource server says it is no longer valid, and retries the request once.

    import getpass
    from shared.client import KeyringTokenStore, OAuthClient

    client = OAuthClient(
        "https://auth.example",                  # the issuer: endpoints come from RFC 8414
        "demo-app", "demo-app-secret",
        token_store=KeyringTokenStore("tessera", "alice"),  # default: kept in memory only
        relogin=lambda c: c.login_password("alice", getpass.getpass()),
    )
    if client.tokens is None:
        client.login_password("alice", getpass.getpass(), scope="profile notes:read")
    notes = client.get("https://notes.example/api/notes").json()  # refreshes by itself
    client.logout()  # RFC 7009: revokes the refresh token, and with it the whole login

A 401 whose ``WWW-Authenticate`` carries ``error="invalid_token"`` (RFC 6750 §3.1) makes the
client use its refresh token (RFC 6749 §6) and retry once; nothing else does: a bare 401, a 403
``insufficient_scope`` or any other answer goes back to the caller as is. Refresh tokens rotate
and a second use of one revokes the whole login, so threads that share a client refresh under a
lock and only the first one to get there asks the authorization server; the others use what it
got. When the refresh token itself is refused (``invalid_grant``: expired, revoked, reused), the
``relogin`` callback runs, or ``LoginRequired`` is raised.

With ``dpop=True`` (or a ``DPoPKey``) the client proves possession of a key (RFC 9449): every
token request carries a DPoP proof, so the tokens it gets are bound to that key and useless to
anyone who copies them, and every API request sends ``Authorization: DPoP`` with a proof for
its method, URL and token. A server's ``use_dpop_nonce`` answer (with a ``DPoP-Nonce`` header)
is retried once with the nonce, which is then used for that origin. The key is generated
(ES256), or loaded from and saved to a token store that keeps keys (``KeyringTokenStore``).

Token values are never logged, only their SHA-256 fingerprints, and ``repr(Tokens)`` shows only
those. Request bodies are sent again on the retry, so pass bytes, str, dict or ``json=``, not a
stream. Several processes sharing one token store each rotate on their own: give the
authorization server a ``REFRESH_REUSE_GRACE`` if they may race.
"""

# Why fetch and refresh are ours and not Authlib's OAuth2Session (requests_client), which also
# fetches, refreshes and revokes: the client library installs with requests, joserfc and
# cryptography alone (pyproject's `client` extra; tests/shared/test_package_layout.py), and
# Authlib would add a dependency for a small part of it. What this client needs is also not
# what OAuth2Session does: it refreshes on the resource server's `invalid_token` challenge and
# retries once (RFC 6750 §3.1), where Authlib's ensure_active_token refreshes on the local expiry
# clock only; rotating refresh tokens are renewed under one lock by the first thread only, as
# a second use revokes the login; and RFC 9449 DPoP proofs with the server's nonce, which
# Authlib does not support (its own comment in authlib/oauth2/drafts/id_jag.py), and RFC 8414
# discovery of the endpoints.

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, urlsplit, urlunsplit

import requests
from requests.auth import AuthBase, HTTPBasicAuth

from shared.client.dpop import DPoPKey, NonceBook
from shared.protocol import json_input
from shared.protocol.digests import fingerprint

log = logging.getLogger("tessera.client")

WELL_KNOWN = "/.well-known/oauth-authorization-server"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
DEFAULT_EXPIRY_SKEW = 2.0


# -- errors -----------------------------------------------------------------------------------


class OAuthClientError(Exception):
    """Base class of every error this module raises (network errors stay ``requests``')."""


class ProtocolError(OAuthClientError):
    """A server answered something the protocol does not allow (not JSON, fields missing)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class DiscoveryError(ProtocolError):
    """The RFC 8414 metadata is missing, malformed or names another issuer."""


class TokenEndpointError(OAuthClientError):
    """An RFC 6749 §5.2 (or RFC 7009 §2.2.1) error answer from the authorization server."""

    def __init__(self, error: str, description: str | None, status: int) -> None:
        super().__init__(f"{error}: {description}" if description else error)
        self.error = error
        self.description = description
        self.status = status


class LoginRequired(OAuthClientError):
    """No usable tokens: never logged in, or the refresh token was refused (``invalid_grant``)."""

    def __init__(self, error: str | None = None, description: str | None = None) -> None:
        super().__init__(description or error or "Not logged in")
        self.error = error
        self.description = description


# -- tokens and where they are kept -----------------------------------------------------------


@dataclass(frozen=True)
class Tokens:
    """One login's tokens. ``expires_at`` is our clock's time the access token expires."""

    access_token: str
    refresh_token: str | None = None
    expires_at: float | None = None
    scope: str | None = None
    token_type: str = "Bearer"

    @classmethod
    def from_response(cls, body: Mapping[str, Any], now: float, dpop: bool = False) -> Tokens:
        """A successful RFC 6749 §5.1 token response, received at ``now`` (seconds); with
        ``dpop`` (a proof was sent), a DPoP token (RFC 9449 §5) is understood too."""
        access = body.get("access_token")
        if not isinstance(access, str) or not access:
            raise ProtocolError("The token response has no access_token")
        token_type = body.get("token_type")
        # RFC 6749 §7.1: a client MUST NOT use a token whose type it does not understand.
        understood = ("bearer", "dpop") if dpop else ("bearer",)
        if not isinstance(token_type, str) or token_type.lower() not in understood:
            raise ProtocolError(f"The token response has token_type {token_type!r}, not Bearer")
        token_type = "DPoP" if token_type.lower() == "dpop" else "Bearer"
        expires_in = body.get("expires_in")
        # Finite: 1e999 (infinity to json.loads) or NaN would make the token never expire
        # here, and a 400-digit integer would overflow the addition below.
        lifetime = json_input.finite_number(expires_in)
        if expires_in is not None and not (lifetime is not None and lifetime >= 0):
            raise ProtocolError("The token response has an invalid expires_in")
        refresh = body.get("refresh_token")
        if refresh is not None and (not isinstance(refresh, str) or not refresh):
            raise ProtocolError("The token response has an invalid refresh_token")
        scope = body.get("scope")
        if scope is not None and not isinstance(scope, str):
            raise ProtocolError("The token response has an invalid scope")
        return cls(
            access_token=access,
            refresh_token=refresh,
            expires_at=None if lifetime is None else now + lifetime,
            scope=scope,
            token_type=token_type,
        )

    def expired(self, now: float, skew: float = 0.0) -> bool:
        return self.expires_at is not None and now >= self.expires_at - skew

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Tokens:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})

    def __repr__(self) -> str:
        refresh = fingerprint(self.refresh_token) if self.refresh_token else None
        return (
            f"Tokens(access_token=<sha256:{fingerprint(self.access_token)}>, "
            f"refresh_token={f'<sha256:{refresh}>' if refresh else None}, "
            f"expires_at={self.expires_at!r}, scope={self.scope!r}, "
            f"token_type={self.token_type!r})"
        )


class TokenStore(Protocol):
    def load(self) -> Tokens | None: ...

    def save(self, tokens: Tokens) -> None: ...

    def clear(self) -> None: ...


class MemoryTokenStore:
    """Tokens that live as long as the process."""

    def __init__(self, tokens: Tokens | None = None) -> None:
        self._tokens = tokens

    def load(self) -> Tokens | None:
        return self._tokens

    def save(self, tokens: Tokens) -> None:
        self._tokens = tokens

    def clear(self) -> None:
        self._tokens = None


class KeyringTokenStore:
    """Tokens kept as JSON in the operating system's keyring (the optional ``keyring`` package),
    so a desktop or CLI app stays logged in across restarts."""

    def __init__(self, service_name: str, account: str) -> None:
        try:
            import keyring
            import keyring.errors
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise ImportError(
                "KeyringTokenStore needs the keyring package: pip install 'tessera[keyring]'"
            ) from exc
        self._keyring = keyring
        self.service_name = service_name
        self.account = account

    def load(self) -> Tokens | None:
        raw = self._keyring.get_password(self.service_name, self.account)
        if raw is None:
            return None
        try:
            return Tokens.from_dict(json_input.loads(raw))
        except (ValueError, TypeError, KeyError):
            # Unreadable (another program's entry, an old format): the same as logged out.
            log.warning("ignoring an unreadable keyring entry for %s", self.service_name)
            return None

    def save(self, tokens: Tokens) -> None:
        self._keyring.set_password(self.service_name, self.account, json.dumps(tokens.to_dict()))

    def clear(self) -> None:
        # Nothing stored is already clear.
        with contextlib.suppress(self._keyring.errors.PasswordDeleteError):
            self._keyring.delete_password(self.service_name, self.account)

    # The DPoP key lives in its own entry: logging out forgets the tokens, not the key.
    def load_dpop_key(self) -> DPoPKey | None:
        raw = self._keyring.get_password(self.service_name, self.account + "#dpop")
        try:
            return DPoPKey.from_json(raw) if raw else None
        except (ValueError, TypeError, KeyError):
            log.warning("ignoring an unreadable DPoP key entry for %s", self.service_name)
            return None

    def save_dpop_key(self, key: DPoPKey) -> None:
        self._keyring.set_password(self.service_name, self.account + "#dpop", key.to_json())


# -- WWW-Authenticate (RFC 7235 §4.1) ---------------------------------------------------------

_TCHARS = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_SEPARATORS = re.compile(r"[ \t,]*")
_SCHEME = re.compile(_TCHARS)
# token68 only when it is all that follows the scheme in this challenge (else it is a param).
_TOKEN68 = re.compile(r"[ \t]+([A-Za-z0-9\-._~+/]+=*)[ \t]*(?=,|$)")
_PARAM = re.compile(
    r"[ \t,]*(" + _TCHARS + r")[ \t]*=[ \t]*(?:(" + _TCHARS + r')|"((?:[^"\\]|\\.)*)")[ \t]*'
)
_QUOTED_PAIR = re.compile(r"\\(.)")


def parse_www_authenticate(value: str) -> list[tuple[str, dict[str, str]]]:
    """Every challenge in a WWW-Authenticate value: (scheme in lower case, {param: value}).

    Parameter names are lower-cased (RFC 7235 §2.1), values unquoted; a token68 is under "".
    Parsing stops at the first malformed element, keeping what came before.
    """
    challenges: list[tuple[str, dict[str, str]]] = []
    pos = 0
    while True:
        separators = _SEPARATORS.match(value, pos)
        assert separators is not None  # it matches the empty string
        pos = separators.end()
        scheme = _SCHEME.match(value, pos)
        if scheme is None:
            return challenges
        params: dict[str, str] = {}
        challenges.append((scheme.group().lower(), params))
        pos = scheme.end()
        token68 = _TOKEN68.match(value, pos)
        if token68 is not None:
            params[""] = token68.group(1)
            pos = token68.end()
            continue
        while (param := _PARAM.match(value, pos)) is not None:
            name, plain, quoted = param.groups()
            # RFC 7235 §2.1: a name MUST occur only once; keep the first if a server repeats it.
            params.setdefault(name.lower(), plain if plain is not None else _unquote(quoted))
            pos = param.end()


def _unquote(quoted: str) -> str:
    return _QUOTED_PAIR.sub(r"\1", quoted)


def is_invalid_token(response: requests.Response) -> bool:
    """RFC 6750 §3.1: only 401 with a Bearer (or RFC 9449 DPoP) challenge saying invalid_token
    means "refresh"."""
    return _challenge_error(response) == "invalid_token"


def _challenge_error(response: requests.Response) -> str | None:
    if response.status_code != 401:
        return None
    header = response.headers.get("WWW-Authenticate", "")
    for scheme, params in parse_www_authenticate(header):
        if scheme in ("bearer", "dpop") and params.get("error"):
            return params["error"]
    return None


# -- the client -------------------------------------------------------------------------------


class _Bearer(AuthBase):
    """Passed as ``auth=`` rather than a header so requests never swaps in ~/.netrc credentials."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


class _DPoP(AuthBase):
    """RFC 9449 §7.1: the token under the DPoP scheme and a proof for this very request."""

    def __init__(self, token: str, key: DPoPKey, nonce: str | None) -> None:
        self.token = token
        self.key = key
        self.nonce = nonce

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"DPoP {self.token}"
        request.headers["DPoP"] = self.key.proof(
            request.method or "GET", request.url or "", access_token=self.token, nonce=self.nonce
        )
        return request


Relogin = Callable[["OAuthClient"], "Tokens | None"]
ScopeArg = str | Iterable[str] | None
ResourceArg = str | Iterable[str] | None  # RFC 8707: one or more target URIs


class OAuthClient:
    """A confidential (or, with ``client_secret=None``, public) client of one issuer.

    ``relogin(client)`` runs when the refresh token is refused: it may call
    ``client.login_password(...)`` or return new ``Tokens``; the request is then retried once.
    ``expiry_skew``: refresh before sending when the access token expires within this many
    seconds (None: only when a resource server answers 401 invalid_token).
    """

    def __init__(
        self,
        issuer_or_metadata_url: str,
        client_id: str,
        client_secret: str | None,
        *,
        token_store: TokenStore | None = None,
        relogin: Relogin | None = None,
        session: requests.Session | None = None,
        timeout: float = 10,
        scope: ScopeArg = None,
        resource: ResourceArg = None,
        expiry_skew: float | None = DEFAULT_EXPIRY_SKEW,
        insecure_transport: bool = False,
        clock: Callable[[], float] = time.time,
        dpop: bool | DPoPKey = False,
    ) -> None:
        self.issuer, self.metadata_url = _issuer_and_metadata_url(issuer_or_metadata_url)
        self._appended_metadata_url = (
            self.metadata_url if WELL_KNOWN in issuer_or_metadata_url else self.issuer + WELL_KNOWN
        )
        self.client_id = client_id
        self._client_secret = client_secret
        self.store: TokenStore = token_store if token_store is not None else MemoryTokenStore()
        self.relogin = relogin
        self.session = session if session is not None else requests.Session()
        self.timeout = timeout
        self.scope = scope
        self.resource = resource
        self.expiry_skew = expiry_skew
        self.insecure_transport = insecure_transport
        self._clock = clock
        _check_transport(self.metadata_url, insecure_transport)
        self._metadata: dict[str, Any] | None = None
        self._metadata_lock = threading.Lock()
        # Serialises renewals (refresh, re-login). Re-entrant: relogin may call request().
        self._renew_lock = threading.RLock()
        self._tokens = self.store.load()
        self.dpop_key = self._dpop_key(dpop)
        self._nonces = NonceBook()
        # Set by login_client_credentials: such a login has no refresh token; we just ask again.
        self._client_credentials: tuple[ScopeArg, ResourceArg] | None = None

    def __repr__(self) -> str:
        return f"OAuthClient(issuer={self.issuer!r}, client_id={self.client_id!r})"

    def _dpop_key(self, dpop: bool | DPoPKey) -> DPoPKey | None:
        """The key given, or the store's, or a new one (saved if the store keeps keys)."""
        if isinstance(dpop, DPoPKey):
            return dpop
        if not dpop:
            return None
        key = self.store.load_dpop_key() if hasattr(self.store, "load_dpop_key") else None
        if key is None:
            key = DPoPKey.generate()
            if hasattr(self.store, "save_dpop_key"):
                self.store.save_dpop_key(key)
        return key

    @property
    def tokens(self) -> Tokens | None:
        """The tokens in use now, or None when logged out."""
        return self._tokens

    # -- discovery (RFC 8414) -----------------------------------------------------------------

    @property
    def metadata(self) -> dict[str, Any]:
        """The authorization server's metadata, fetched on first use and then kept."""
        with self._metadata_lock:
            if self._metadata is None:
                self._metadata = self._discover()
            return self._metadata

    def _discover(self) -> dict[str, Any]:
        response = self.session.get(self.metadata_url, timeout=self.timeout)
        url = self.metadata_url
        if response.status_code == 404 and self.metadata_url != self._appended_metadata_url:
            # An issuer with a path served behind a prefix answers at issuer + well-known.
            url = self._appended_metadata_url
            response = self.session.get(url, timeout=self.timeout)
        if response.status_code != 200:
            raise DiscoveryError(f"{url} answered {response.status_code}", response.status_code)
        body = _json_object(response, "the metadata document", DiscoveryError)
        # RFC 8414 §3.3: the issuer MUST be identical to the one the client asked for, or the
        # metadata MUST NOT be used (a mix-up or impersonation of another server).
        if body.get("issuer") != self.issuer:
            raise DiscoveryError(
                f"The metadata at {url} names issuer {body.get('issuer')!r}, not {self.issuer!r}"
            )
        for key in ("token_endpoint", "revocation_endpoint"):
            endpoint = body.get(key)
            if endpoint is not None and (not isinstance(endpoint, str) or not endpoint):
                raise DiscoveryError(f"The metadata has an invalid {key}")
        if not body.get("token_endpoint"):
            raise DiscoveryError("The metadata has no token_endpoint")
        for key in ("token_endpoint", "revocation_endpoint"):
            if body.get(key):
                _check_transport(body[key], self.insecure_transport)
        return body

    # -- logging in ---------------------------------------------------------------------------

    def login_password(
        self, username: str, password: str, scope: ScopeArg = None, resource: ResourceArg = None
    ) -> Tokens:
        """RFC 6749 §4.3 (first-party apps only): replaces whatever login this client held."""
        tokens = self._token_request(
            {"grant_type": "password", "username": username, "password": password},
            scope if scope is not None else self.scope,
            resource if resource is not None else self.resource,
        )
        self._client_credentials = None
        self._save(tokens)
        log.info("logged in (refresh token %s)", _fp(tokens.refresh_token))
        return tokens

    def login_client_credentials(
        self, scope: ScopeArg = None, resource: ResourceArg = None
    ) -> Tokens:
        """RFC 6749 §4.4: a token for the client itself; a new one is fetched when it expires."""
        scope = scope if scope is not None else self.scope
        resource = resource if resource is not None else self.resource
        tokens = self._token_request({"grant_type": "client_credentials"}, scope, resource)
        self._client_credentials = (scope, resource)
        self._save(tokens)
        return tokens

    def logout(self) -> None:
        """RFC 7009: revoke the refresh token (in Tessera: the whole login), then forget both.

        The tokens are forgotten even when revocation fails; the error is raised so the
        caller knows the server may still honour them.
        """
        with self._renew_lock:
            tokens = self._reload()
            self._client_credentials = None
            try:
                if tokens is not None:
                    self._revoke(tokens)
            finally:
                self._clear()

    def _revoke(self, tokens: Tokens) -> None:
        endpoint = self.metadata.get("revocation_endpoint")
        if not endpoint:
            raise DiscoveryError("The authorization server publishes no revocation_endpoint")
        if tokens.refresh_token:
            form = {"token": tokens.refresh_token, "token_type_hint": "refresh_token"}
        else:
            form = {"token": tokens.access_token, "token_type_hint": "access_token"}
        response = self._post(endpoint, form)
        # RFC 7009 §2.2: 200 whether or not the token was valid; anything else is an error.
        if response.status_code != 200:
            raise _endpoint_error(response, "the revocation endpoint")
        log.info("logged out (refresh token %s)", _fp(tokens.refresh_token))

    # -- calling APIs -------------------------------------------------------------------------

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """``requests.Session.request`` with the bearer token, renewed at most once."""
        if "auth" in kwargs:
            raise TypeError("OAuthClient sets the Authorization header itself; do not pass auth")
        _check_transport(url, self.insecure_transport)
        kwargs.setdefault("timeout", self.timeout)
        # Reload when we hold nothing: another client may have logged in to the same store.
        tokens = self._tokens or self._reload()
        renewed = False
        if tokens is None or (
            self.expiry_skew is not None and tokens.expired(self._clock(), self.expiry_skew)
        ):
            tokens = self._renew(tokens)
            renewed = True
        response = self._send(method, url, tokens, kwargs)
        # Renew and retry once at most: a second 401 goes back to the caller, never a loop.
        if renewed or not is_invalid_token(response):
            return response
        log.info("access token %s refused; renewing", _fp(tokens.access_token))
        response.close()
        tokens = self._renew(tokens)
        return self._send(method, url, tokens, kwargs)

    def _send(
        self, method: str, url: str, tokens: Tokens, kwargs: dict[str, Any]
    ) -> requests.Response:
        if tokens.token_type != "DPoP":
            return self.session.request(method, url, auth=_Bearer(tokens.access_token), **kwargs)
        if self.dpop_key is None:
            raise OAuthClientError("A DPoP-bound token needs the DPoP key it was issued for")
        auth = _DPoP(tokens.access_token, self.dpop_key, self._nonces.get(url))
        response = self.session.request(method, url, auth=auth, **kwargs)
        # RFC 9449 §9: the resource server wants its nonce in the proof: once more with it.
        if self._nonces.remember(url, response.headers) and (
            _challenge_error(response) == "use_dpop_nonce"
        ):
            response.close()
            auth.nonce = self._nonces.get(url)
            response = self.session.request(method, url, auth=auth, **kwargs)
        return response

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> requests.Response:
        return self.request("PUT", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> requests.Response:
        return self.request("PATCH", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", url, **kwargs)

    # -- renewal ------------------------------------------------------------------------------

    def _renew(self, failed: Tokens | None) -> Tokens:
        """Tokens to use instead of ``failed`` (None: we had none). One renewal at a time."""
        with self._renew_lock:
            current = self._reload()
            # Someone else renewed (or logged in) while we waited for the lock: use theirs.
            # Refreshing again would present a consumed refresh token, which is reuse and
            # revokes the whole login (RFC 9700 §4.14.2).
            if current is not None and (
                failed is None or current.access_token != failed.access_token
            ):
                return current
            reason: TokenEndpointError | None = None
            if current is not None and current.refresh_token:
                try:
                    return self._refresh(current)
                except TokenEndpointError as exc:
                    if exc.error != "invalid_grant":
                        raise
                    log.info("refresh token %s refused: %s", _fp(current.refresh_token), exc)
                    reason = exc
            elif current is not None and self._client_credentials is not None:
                return self.login_client_credentials(*self._client_credentials)
            # Whatever we held cannot be renewed: forget it before asking for a new login.
            self._clear()
            return self._relogin(reason)

    def _refresh(self, tokens: Tokens) -> Tokens:
        # RFC 6749 §6: no scope means the login's scope; the audience is the login's too.
        new = self._token_request(
            {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token}, None, None
        )
        # §6: the server MAY keep the refresh token (omit it), and §5.1: an omitted scope is
        # unchanged.
        new = dataclasses.replace(
            new,
            refresh_token=new.refresh_token or tokens.refresh_token,
            scope=new.scope if new.scope is not None else tokens.scope,
        )
        self._save(new)
        log.info(
            "refreshed: refresh token %s -> %s", _fp(tokens.refresh_token), _fp(new.refresh_token)
        )
        return new

    def _relogin(self, reason: TokenEndpointError | None) -> Tokens:
        error = reason.error if reason else None
        if self.relogin is None:
            raise LoginRequired(error, reason.description if reason else "Not logged in")
        result = self.relogin(self)
        if result is not None:
            self._save(result)
        tokens = self._reload()
        if tokens is None:
            raise LoginRequired(error, "The relogin callback did not log in")
        return tokens

    # -- token endpoint -----------------------------------------------------------------------

    def _token_request(
        self, form: dict[str, Any], scope: ScopeArg, resource: ResourceArg
    ) -> Tokens:
        if scope is not None:
            form["scope"] = scope if isinstance(scope, str) else " ".join(scope)
        if resource is not None:
            # RFC 8707 §2: resource may be repeated, one per target.
            form["resource"] = [resource] if isinstance(resource, str) else list(resource)
        # Taken before sending, so expires_at errs on the early side.
        now = self._clock()
        endpoint = self.metadata["token_endpoint"]
        response = self._post(endpoint, form, dpop=True)
        if response.status_code != 200:
            error = _endpoint_error(response, "the token endpoint")
            # RFC 9449 §8: the server wants its nonce in the proof: once more with it.
            if error.error != "use_dpop_nonce" or not self._nonces.get(endpoint):
                raise error
            response = self._post(endpoint, form, dpop=True)
            if response.status_code != 200:
                raise _endpoint_error(response, "the token endpoint")
        body = _json_object(response, "the token response")
        return Tokens.from_response(body, now, dpop=self.dpop_key is not None)

    def _post(self, endpoint: str, form: dict[str, Any], dpop: bool = False) -> requests.Response:
        if self._client_secret is None:
            auth = None
            form = {**form, "client_id": self.client_id}
        else:
            # RFC 6749 §2.3.1: id and secret are form-encoded before they go into Basic.
            auth = HTTPBasicAuth(
                quote(self.client_id, safe=""), quote(self._client_secret, safe="")
            )
        headers = {}
        if dpop and self.dpop_key is not None:
            headers["DPoP"] = self.dpop_key.proof(
                "POST", endpoint, nonce=self._nonces.get(endpoint)
            )
        # No redirects: following one would send the credentials in the body somewhere else.
        response = self.session.post(
            endpoint,
            data=form,
            auth=auth,
            headers=headers,
            timeout=self.timeout,
            allow_redirects=False,
        )
        if dpop and self.dpop_key is not None:
            self._nonces.remember(endpoint, response.headers)
        return response

    # -- storage ------------------------------------------------------------------------------

    def _save(self, tokens: Tokens) -> None:
        self.store.save(tokens)
        self._tokens = tokens

    def _clear(self) -> None:
        self._tokens = None
        self.store.clear()

    def _reload(self) -> Tokens | None:
        # The store is the truth: another client object (or process) may have rotated.
        self._tokens = self.store.load()
        return self._tokens


# -- helpers ----------------------------------------------------------------------------------


def _fp(token: str | None) -> str:
    return fingerprint(token) if token else "-"


def _issuer_and_metadata_url(value: str) -> tuple[str, str]:
    """(issuer, metadata URL) from either one (RFC 8414 §3.1)."""
    parts = urlsplit(value)
    if not parts.scheme or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"Not an issuer or metadata URL: {value!r}")
    if WELL_KNOWN in parts.path:
        # Both the RFC's form (/.well-known/... + issuer path) and the common appended form.
        path = parts.path.replace(WELL_KNOWN, "", 1)
        return urlunsplit((parts.scheme, parts.netloc, path, "", "")), value
    # §3.1: the well-known string goes between the host and the issuer's path, without a
    # terminating "/". The issuer itself is kept exactly as given, for the §3.3 comparison.
    path = parts.path.rstrip("/")
    return value, urlunsplit((parts.scheme, parts.netloc, WELL_KNOWN + path, "", ""))


def _check_transport(url: str, insecure: bool) -> None:
    # RFC 6749 §3.2 and RFC 6750 §5.3: credentials and tokens travel over TLS only. Loopback
    # is exempt (local development and tests), as everything else with insecure_transport.
    parts = urlsplit(url)
    if parts.scheme == "https" or insecure:
        return
    if parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS:
        return
    raise OAuthClientError(
        f"Refusing to send credentials to {parts.scheme}://{parts.netloc}: use https "
        "(or insecure_transport=True for a test set-up)"
    )


def _json_object(
    response: requests.Response, what: str, error: type[ProtocolError] = ProtocolError
) -> dict[str, Any]:
    try:
        body = json_input.loads(response.content)
    except ValueError:
        content_type = response.headers.get("Content-Type", "no content type")
        raise error(
            f"{what} ({response.status_code}, {content_type}) is not JSON", response.status_code
        ) from None
    if not isinstance(body, dict):
        raise error(f"{what} is not a JSON object", response.status_code)
    return body


def _endpoint_error(response: requests.Response, what: str) -> TokenEndpointError:
    body = _json_object(response, f"the error from {what}")
    error = body.get("error")
    if not isinstance(error, str) or not error:
        raise ProtocolError(f"{what} answered {response.status_code} without an error code")
    description = body.get("error_description")
    return TokenEndpointError(
        error, description if isinstance(description, str) else None, response.status_code
    )
