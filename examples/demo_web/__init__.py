"""Tessera Notes, the demo web app: a backend-for-frontend client of the authorization server
and the notes API (docs/demo-web.md). The browser holds one opaque HttpOnly cookie; the tokens
stay in this app's server-side session store.

    flask --app examples.demo_web run --port 8002       # or scripts/run-demo (make run)
"""

from __future__ import annotations

import time
from collections.abc import Callable

import requests
from flask import Flask

from examples.demo_web.oauth import MetadataCache
from examples.demo_web.sessions import SessionStore
from examples.demo_web.settings import DemoWebSettings


class DemoWeb:
    """What the views share: settings, the session store, the metadata cache, one HTTP pool."""

    def __init__(self, settings: DemoWebSettings, clock: Callable[[], float]) -> None:
        self.settings = settings
        self.clock = clock
        self.sessions = SessionStore(
            settings.demo_web_session_db, settings.demo_web_session_ttl, clock
        )
        self.http = requests.Session()
        self.metadata = MetadataCache(settings, self.http)

    @property
    def cookie_name(self) -> str:
        # RFC 6265bis §4.1.3.2: a __Host- cookie is Secure, host-only and Path=/, so neither a
        # sibling subdomain nor plain http can plant or overwrite it.
        return "__Host-demo_session" if self.settings.secure_cookies else "demo_session"


def create_app(
    settings: DemoWebSettings | None = None, *, clock: Callable[[], float] = time.time
) -> Flask:
    settings = settings or DemoWebSettings()
    app = Flask(__name__, static_folder="static", static_url_path="/static")
    # Its forms are a CSRF token and a note (at most 10,000 characters): nothing bigger.
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    app.extensions["demo_web"] = DemoWeb(settings, clock)

    from examples.demo_web import views

    app.register_blueprint(views.bp)
    return app
