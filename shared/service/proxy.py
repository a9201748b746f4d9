"""Behind a reverse proxy: take the client address and scheme from X-Forwarded-* headers, but
only from as many proxies as the operator says are there (TRUSTED_PROXIES); a client could
otherwise claim any IP and dodge per-IP login throttling."""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix


def trust_proxies(app: Flask, hops: int) -> None:
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
