"""The requests session a service uses to call another service (JWKS; introspection uses
shared/protocol/deadline_http.py)."""

from __future__ import annotations

from http.cookiejar import DefaultCookiePolicy

import requests
from requests.adapters import HTTPAdapter
from requests.cookies import RequestsCookieJar

from shared.protocol.deadline_http import deadline_pool_classes


def service_session(pool_size: int = 10) -> requests.Session:
    """A pooled session that takes nothing from the environment and keeps no cookies."""
    session = requests.Session()
    # No proxies, .netrc or CA bundle from the environment: what the service talks to is set
    # explicitly, and skipping the per-request environment lookup keeps the hot path short.
    session.trust_env = False
    # No cookies either: state from one user's request must never ride along on another's.
    session.cookies = RequestsCookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
    # Connections that honour shared.protocol.deadline_http.deadline(): a call made inside one ends
    # by then, however slowly the peer sends its answer.
    adapter.poolmanager.pool_classes_by_scheme = deadline_pool_classes()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
