"""The app's side of the authorization code grant (RFC 6749 §4.1) with PKCE (RFC 7636) and
issuer identification (RFC 9207); no Flask here."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import requests

from examples.demo_web.settings import DemoWebSettings
from shared.client import DiscoveryError, OAuthClient, Tokens

# How long a sign-in may take between leaving for the authorization server and coming back.
PENDING_LOGIN_MAX_AGE = 600


class CallbackError(Exception):
    """An authorization response the app must not act on; the message is shown to the user."""


@dataclass(frozen=True)
class PendingLogin:
    """What the app remembers (server-side) between the redirect out and the callback."""

    state: str
    code_verifier: str
    started_at: int

    @classmethod
    def start(cls, now: float) -> PendingLogin:
        return cls(secrets.token_urlsafe(32), secrets.token_urlsafe(64), int(now))

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "code_verifier": self.code_verifier, "at": self.started_at}

    @classmethod
    def from_dict(cls, data: Any) -> PendingLogin | None:
        if not isinstance(data, dict):
            return None
        return cls(data["state"], data["code_verifier"], data["at"])

    @property
    def code_challenge(self) -> str:
        digest = hashlib.sha256(self.code_verifier.encode("ascii")).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class MetadataCache:
    """The authorization server's RFC 8414 metadata, fetched once per process and checked
    against the configured issuer (§3.3). Endpoints the app calls itself are rebased onto
    DEMO_WEB_AUTH_SERVER_URL when the app reaches the server by another address."""

    def __init__(self, settings: DemoWebSettings, session: requests.Session) -> None:
        self._settings = settings
        self._session = session
        self._lock = threading.Lock()
        self._metadata: dict[str, Any] | None = None

    def get(self) -> dict[str, Any]:
        with self._lock:
            if self._metadata is None:
                self._metadata = self._fetch()
            return self._metadata

    def _fetch(self) -> dict[str, Any]:
        settings = self._settings
        issuer = settings.demo_web_issuer
        backchannel = settings.backchannel_url
        # The shared client's discovery: the §3.3 issuer check, endpoint checks.
        probe = OAuthClient(
            backchannel,
            settings.demo_web_client_id,
            None,
            session=self._session,
            insecure_transport=settings.demo_web_insecure_transport,
        )
        if backchannel != issuer.rstrip("/"):
            metadata = _fetch_at(probe, issuer)
        else:
            metadata = dict(probe.metadata)
        for key in ("token_endpoint", "revocation_endpoint"):
            if metadata.get(key):
                metadata[key] = _rebase(metadata[key], issuer, backchannel)
        if not metadata.get("authorization_endpoint"):
            raise DiscoveryError("The metadata has no authorization_endpoint")
        return metadata


def _fetch_at(probe: OAuthClient, issuer: str) -> dict[str, Any]:
    response = probe.session.get(probe.metadata_url, timeout=probe.timeout)
    if response.status_code != 200:
        raise DiscoveryError(f"{probe.metadata_url} answered {response.status_code}")
    body = response.json()
    if not isinstance(body, dict) or body.get("issuer") != issuer:
        raise DiscoveryError(f"The metadata at {probe.metadata_url} does not name {issuer!r}")
    return body


def _rebase(url: str, issuer: str, backchannel: str) -> str:
    if backchannel == issuer.rstrip("/"):
        return url
    public, inner = urlsplit(issuer), urlsplit(backchannel)
    parts = urlsplit(url)
    if (parts.scheme, parts.netloc) != (public.scheme, public.netloc):
        return url
    return urlunsplit((inner.scheme, inner.netloc, parts.path, parts.query, ""))


class DemoWebClient(OAuthClient):
    """shared/client/oauth.py's client for one browser session: its metadata comes from the app's
    cache, and it can redeem an authorization code."""

    def __init__(self, metadata: MetadataCache, settings: DemoWebSettings, **kwargs) -> None:
        self._metadata_cache = metadata
        super().__init__(
            settings.backchannel_url,
            settings.demo_web_client_id,
            settings.demo_web_client_secret,
            insecure_transport=settings.demo_web_insecure_transport,
            **kwargs,
        )

    def _discover(self) -> dict[str, Any]:
        return self._metadata_cache.get()

    def login_authorization_code(self, code: str, redirect_uri: str, verifier: str) -> Tokens:
        """RFC 6749 §4.1.3 with the PKCE verifier (RFC 7636 §4.5)."""
        tokens = self._token_request(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
            },
            None,
            None,
        )
        self._save(tokens)
        return tokens


def authorization_url(metadata: dict[str, Any], settings: DemoWebSettings, pending: PendingLogin):
    """Where the browser goes to sign in (RFC 6749 §4.1.1, PKCE S256)."""
    query = urlencode(
        {
            "response_type": "code",
            "client_id": settings.demo_web_client_id,
            "redirect_uri": settings.redirect_uri,
            "scope": settings.demo_web_scope,
            "state": pending.state,
            "code_challenge": pending.code_challenge,
            "code_challenge_method": "S256",
        }
    )
    endpoint = metadata["authorization_endpoint"]
    return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"


def check_callback(
    params: dict[str, str],
    pending: PendingLogin | None,
    metadata: dict[str, Any],
    issuer: str,
    now: float | None = None,
) -> str:
    """The code of a callback that answers our own pending request; else CallbackError.

    Order matters: `state` first (a response to a request we did not make is not even read),
    then `iss` (RFC 9207 §2.4: a response from another server, a mix-up attack), then the
    error or the code.
    """
    now = time.time() if now is None else now
    state = params.get("state")
    if pending is None or not state:
        raise CallbackError("This sign-in was not started here, or it has already finished.")
    if not hmac.compare_digest(pending.state.encode(), state.encode("utf-8", "surrogateescape")):
        raise CallbackError("This sign-in response does not belong to your sign-in.")
    if now - pending.started_at > PENDING_LOGIN_MAX_AGE:
        raise CallbackError("This sign-in took too long.")
    iss = params.get("iss")
    if iss is None and metadata.get("authorization_response_iss_parameter_supported"):
        raise CallbackError("The sign-in response does not say which server sent it.")
    if iss is not None and iss != issuer:
        raise CallbackError("The sign-in response came from another server.")
    if params.get("error"):
        if params["error"] == "access_denied":
            raise CallbackError("Sign-in was cancelled.")
        raise CallbackError("The authorization server could not sign you in.")
    code = params.get("code")
    if not code:
        raise CallbackError("The sign-in response has no authorization code.")
    return code
