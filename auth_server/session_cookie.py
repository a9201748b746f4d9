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


class CookieSessionOnDemand(SecureCookieSessionInterface):
    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if app.secret_key and "HTTP_COOKIE" not in request.environ:
            return self.session_class()  # what Flask answers to a request without the cookie
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        # Flask's save_session does nothing either for an empty session never read or written.
        if not session and not session.accessed and not session.modified:
            return
        super().save_session(app, session, response)
