"""The demo web app, live, between a live authorization server and notes API."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from auth_server.clients import register_client
from auth_server.db import db
from examples.demo_web import create_app
from examples.demo_web.settings import DemoWebSettings
from shared.service import demo_seed
from tests.support import AuthServer, ResourceServer

DEMO_WEB = next(client for client in demo_seed.CLIENTS if client["client_id"] == demo_seed.WEB[0])
DEMO_WEB_CREDENTIALS = (DEMO_WEB["client_id"], DEMO_WEB["secret"])


@dataclass
class DemoWebApp:
    url: str
    app: object
    settings: DemoWebSettings

    @property
    def sessions(self):
        return self.app.extensions["demo_web"].sessions


def start_demo_web(
    serve, auth: AuthServer, notes_api: ResourceServer, directory: Path
) -> DemoWebApp:
    """The app on a free port, registered at `auth` as the demo seed registers it, but with
    this port's redirect URI."""
    server = serve()
    registration = {k: v for k, v in DEMO_WEB.items() if k != "redirect_uris"}
    with auth.app.app_context():
        register_client(db.session, redirect_uris=[server.url + "/callback"], **registration)
    settings = DemoWebSettings(
        demo_web_url=server.url,
        demo_web_issuer=auth.url,
        demo_web_notes_url=notes_api.url + "/api",
        demo_web_session_db=str(directory / "demo-web-sessions.sqlite3"),
    )
    app = create_app(settings)
    server.mount(app)
    return DemoWebApp(url=server.url, app=app, settings=settings)


def stored_tokens(demo_web: DemoWebApp) -> list[dict]:
    """The tokens in the app's server-side session store, read from its file."""
    with sqlite3.connect(demo_web.settings.demo_web_session_db) as conn:
        rows = conn.execute("SELECT data FROM web_session").fetchall()
    return [json.loads(data)["tokens"] for (data,) in rows if "tokens" in json.loads(data)]
