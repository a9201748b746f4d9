"""The authorization server's WSGI chain with one of its fast paths (auth_server/fast_paths.py)
either answering or passing every request on, for tests that compare the two answers."""

from __future__ import annotations

from auth_server import fast_paths


class CountingApp:
    """What is inside the fast path (Flask), counting the requests that reach it."""

    def __init__(self, app):
        self.app = app
        self.calls = 0

    def __call__(self, environ, start_response):
        self.calls += 1
        return self.app(environ, start_response)


class Paths:
    """The app's whole WSGI chain, with the fast path `app.extensions[extension]` (of type
    `kind`), or with that fast path passing every request on; `flask.calls` counts the
    requests that went past it."""

    def __init__(self, app, extension: str, kind: type):
        self.whole = app.wsgi_app
        self.fast = app.extensions[extension]
        assert isinstance(self.fast, kind)
        self.flask = self.fast.app = CountingApp(self.fast.app)
        # The fast paths' dispatcher hands any other path to the same app.
        dispatcher = app.extensions[fast_paths.EXTENSION]
        assert dispatcher.app == self.flask.app
        dispatcher.app = self.flask

    def with_fast_path(self, environ, start_response):
        return self.whole(environ, start_response)

    __call__ = with_fast_path

    def flask_alone(self, environ, start_response):
        answer = self.fast._answer
        self.fast._answer = lambda _environ: None
        try:
            return self.whole(environ, start_response)
        finally:
            self.fast._answer = answer
