"""A WSGI app on a real HTTP server in this process (the `serve` fixture starts them)."""

from __future__ import annotations

import threading

from werkzeug.serving import make_server


class LiveServer:
    """A WSGI app served by werkzeug's threaded server on 127.0.0.1 and a free port.

    The port is bound before the app exists (``mount`` sets it later), because an
    authorization server's issuer is its own URL.
    """

    def __init__(self, app=None, port: int = 0) -> None:
        self.app = app
        self._server = make_server("127.0.0.1", port, self._dispatch, threaded=True)
        self.port = self._server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def _dispatch(self, environ, start_response):
        return self.app(environ, start_response)

    def mount(self, app) -> LiveServer:
        self.app = app
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        # Close the app's pool now: PostgreSQL would otherwise collect idle connections.
        extensions = getattr(self.app, "extensions", {})
        if "sqlalchemy" in extensions:
            with self.app.app_context():
                extensions["sqlalchemy"].engine.dispose()
