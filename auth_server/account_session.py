"""The account page's own short session: one signed cookie, separate from any app's tokens.

The cookie holds a CSRF token (synchronizer token pattern: every form of the page posts it
back) and, once the user has signed in, the user's id, the moment of the sign-in and the
user's revocation epoch (epochs.py) at that moment. It is valid for ACCOUNT_SESSION_SECONDS
after the sign-in, whatever the activity, and no longer once the epoch moved: "sign out
everywhere", a password change or disabling the user in any browser ends every account page
session too (the browser that did it gets a new cookie).

The name has the `__Host-` prefix over https (the browser then insists on Secure, Path=/ and no
Domain, so no subdomain can plant or read it); plain http (local development and the tests)
cannot have it. HttpOnly and SameSite=Lax always: no script reads it, no other site's form
post sends it (Lax rather than Strict so that following a link to /account from an app keeps
the session; every change is a POST with the CSRF token).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, replace

from itsdangerous import BadSignature, URLSafeSerializer

# Fifteen minutes from the sign-in: the page can end every login of the user.
ACCOUNT_SESSION_SECONDS = 900
# A sign-in form may stay open this long before its CSRF token is refused.
SIGN_IN_FORM_SECONDS = 1800
COOKIE_NAME = "tessera_account"
SECURE_COOKIE_NAME = "__Host-tessera_account"
_SALT = "tessera-account-page"


@dataclass(frozen=True)
class AccountSession:
    csrf: str
    csrf_at: int
    user_id: int | None = None
    signed_in_at: int | None = None
    epoch: int | None = None

    @classmethod
    def anonymous(cls, now: int) -> AccountSession:
        return cls(csrf=secrets.token_urlsafe(32), csrf_at=now)

    def signed_in(self, user_id: int, epoch: int, now: int) -> AccountSession:
        # A new CSRF token at sign-in: one learnt before it (login CSRF) is worth nothing.
        return AccountSession(secrets.token_urlsafe(32), now, user_id, now, epoch)

    def with_epoch(self, epoch: int) -> AccountSession:
        return replace(self, epoch=epoch)

    def user_for(self, now: int) -> int | None:
        """The signed-in user's id while the session lasts; the caller checks the epoch."""
        if self.user_id is None or self.signed_in_at is None:
            return None
        if now - self.signed_in_at >= ACCOUNT_SESSION_SECONDS or now < self.signed_in_at:
            return None
        return self.user_id

    def csrf_valid(self, presented: str | None, now: int) -> bool:
        if not presented:
            return False
        if self.user_id is None and now - self.csrf_at > SIGN_IN_FORM_SECONDS:
            return False
        return hmac.compare_digest(self.csrf.encode(), presented.encode("utf-8", "surrogateescape"))


class AccountCookie:
    """Encodes and checks the cookie; anything unsigned, altered or malformed is no session."""

    def __init__(self, secret: str, secure: bool):
        self._serializer = URLSafeSerializer(secret, salt=_SALT)
        self.secure = secure
        self.name = SECURE_COOKIE_NAME if secure else COOKIE_NAME

    def load(self, value: str | None) -> AccountSession | None:
        if not value:
            return None
        try:
            data = self._serializer.loads(value)
            session = AccountSession(
                csrf=data["c"],
                csrf_at=data["ca"],
                user_id=data.get("u"),
                signed_in_at=data.get("s"),
                epoch=data.get("e"),
            )
        except (BadSignature, KeyError, TypeError, ValueError):
            return None
        if not isinstance(session.csrf, str) or not isinstance(session.csrf_at, int):
            return None
        signed_in = (session.user_id, session.signed_in_at, session.epoch)
        if session.user_id is not None and not all(type(v) is int for v in signed_in):
            return None
        return session

    def dump(self, session: AccountSession) -> str:
        data = {"c": session.csrf, "ca": session.csrf_at}
        if session.user_id is not None:
            data.update(u=session.user_id, s=session.signed_in_at, e=session.epoch)
        return self._serializer.dumps(data)

    def set_on(self, response, session: AccountSession) -> None:
        response.set_cookie(
            self.name,
            self.dump(session),
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="Lax",
        )
