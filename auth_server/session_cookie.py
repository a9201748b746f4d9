"""The login page's cookie session (Flask's signed cookie), opened only when a cookie came.

Flask opens the session of every request before any view runs, and its signed-cookie session
builds a new signing serializer to do so even when the request carries no cookie: about a
quarter of the Python time of a /healthz answer, for a session that only the login page uses
(its cookie's path is /oauth/authorize). Without a Cookie header there is nothing to read, so
the empty session is made directly; a request that never touches it saves nothing either.
Everything else is Flask's SecureCookieSessionInterface as it is.
"""

from __future__ import annotations

from flask import Flask, Request, Response
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface, SessionMixin


def _mark_modified(session: SecureCookieSession) -> None:
    session.modified = True  # the `on_update` SecureCookieSession.__init__ makes


def _empty_session() -> SecureCookieSession:
    """SecureCookieSession(), as its __init__ leaves it (an empty dict whose changes set
    `modified`), without the three Python calls of that __init__ and CallbackDict's, and the
    closure it makes for each session: two thirds of opening the session of a request."""
    session = SecureCookieSession.__new__(SecureCookieSession)
    session.on_update = _mark_modified
    return session


class CookieSessionOnDemand(SecureCookieSessionInterface):
    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if "HTTP_COOKIE" not in request.environ and app.secret_key:
            # What Flask answers to a request without the cookie: an empty session.
            if self.session_class is SecureCookieSession:
                return _empty_session()
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        # Flask's save_session does nothing either for an empty session never read or written.
        if not session and not session.accessed and not session.modified:
            return
        super().save_session(app, session, response)
