"""Users: password checks, creation, password changes, disabling, and cutting off their tokens."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence

from sqlalchemy.orm import Session

from auth_server import audit
from auth_server.epochs import Steps, no_steps
from auth_server.models import USERNAME_PATTERN, User
from auth_server.passwords import PasswordPolicyError, Passwords
from auth_server.revocation import revoke_user_tokens
from auth_server.store import find_user

# Who a sign-in at the account page is audited as when no user is known yet.
ACCOUNT_PAGE_ACTOR = "account_page"


class AccountError(ValueError):
    """A user operation cannot be done; the message is safe to show to the caller."""


class WrongPasswordError(AccountError):
    """The user could not prove the current password (or does not exist, or is disabled)."""


class Accounts:
    def __init__(
        self,
        session: Session,
        passwords: Passwords,
        clock: Callable[[], float] = time.time,
        steps: Steps = no_steps,
    ):
        self.session = session
        self.passwords = passwords
        self.clock = clock
        self.steps = steps

    def authenticate(
        self, username: str, password: str, *, client_id: str | None, ip: str | None
    ) -> User | None:
        """The user if the password is right and the account enabled; misses are audited.

        `client_id` is the app the user signs in to; None is the account page (/account).

        The user's `token_epoch` is read in the same row as the password hash: the issuance
        that follows passes it to TokenService, which refuses to commit if a revocation moved it
        meanwhile (epochs.py).
        """
        now = int(self.clock())
        user = find_user(self.session, username)
        self.steps("read")
        # verify() also runs for unknown users (against a dummy hash): equal cost, no oracle.
        valid = self.passwords.verify(user.password_hash if user else None, password)
        self.steps("verified")
        if not valid or user is None or user.disabled:
            audit.record(
                self.session,
                "login_failed",
                actor=f"client:{client_id}" if client_id else ACCOUNT_PAGE_ACTOR,
                at=now,
                user_id=user.id if user else None,
                client_id=client_id,
                ip=ip,
                reason="disabled" if valid and user is not None else "bad_credentials",
            )
            self.session.commit()
            return None
        if self.passwords.needs_rehash(user.password_hash):
            user.password_hash = self.passwords.hash(password)
        audit.record(
            self.session,
            "login_succeeded",
            actor=f"user:{user.subject}",
            at=now,
            user_id=user.id,
            client_id=client_id,
            ip=ip,
        )
        return user

    def create_user(
        self, username: str, password: str, scopes: Sequence[str] | None = None
    ) -> User:
        if not USERNAME_PATTERN.match(username):
            raise AccountError("A username is 1-150 letters, digits or . _ @ + -")
        if find_user(self.session, username) is not None:
            raise AccountError(f"The user {username!r} already exists.")
        self._check_policy(username, password)
        now = int(self.clock())
        user = User(
            subject=str(uuid.uuid4()),
            username=username,
            password_hash=self.passwords.hash(password),
            allowed_scopes=" ".join(scopes) if scopes is not None else None,
            disabled=False,
            created_at=now,
            password_changed_at=now,
            token_epoch=0,
        )
        self.session.add(user)
        self.session.flush()
        audit.record(self.session, "user_created", actor="operator", at=now, user_id=user.id)
        self.session.commit()
        return user

    def change_password(
        self, username: str, current: str, new: str, *, ip: str | None = None
    ) -> tuple[int, int]:
        """Check the current password, set the new one, revoke every token of the user."""
        user = find_user(self.session, username)
        self.steps("read")
        valid = self.passwords.verify(user.password_hash if user else None, current)
        self.steps("verified")
        if not valid or user is None or user.disabled:
            raise WrongPasswordError("The current password is incorrect.")
        return self.set_password(user, new, actor=f"user:{user.subject}", ip=ip)

    def set_password(
        self, user: User, new: str, *, actor: str, ip: str | None = None
    ) -> tuple[int, int]:
        self._check_policy(user.username, new)
        now = int(self.clock())
        new_hash = self.passwords.hash(new)
        # The epoch first (revoke_user_tokens), then the new hash, in one transaction.
        revoked = revoke_user_tokens(self.session, user.id, "password_changed", now, self.steps)
        user.password_hash = new_hash
        user.password_changed_at = now
        audit.record(
            self.session,
            "password_changed",
            actor=actor,
            at=now,
            user_id=user.id,
            ip=ip,
            families_revoked=revoked[0],
            access_tokens_revoked=revoked[1],
        )
        self.steps("revoked")
        self.session.commit()
        return revoked

    def revoke_tokens(self, user: User, *, actor: str, reason: str) -> tuple[int, int]:
        now = int(self.clock())
        revoked = revoke_user_tokens(self.session, user.id, reason, now, self.steps)
        audit.record(
            self.session,
            "user_tokens_revoked",
            actor=actor,
            at=now,
            user_id=user.id,
            reason=reason,
            families_revoked=revoked[0],
            access_tokens_revoked=revoked[1],
        )
        self.steps("revoked")
        self.session.commit()
        return revoked

    def disable(self, user: User, *, actor: str) -> tuple[int, int]:
        now = int(self.clock())
        # One transaction: the epoch moves (revoke_tokens) with the flag, so a login that read
        # the enabled user before this commits is refused.
        user.disabled = True
        audit.record(self.session, "user_disabled", actor=actor, at=now, user_id=user.id)
        return self.revoke_tokens(user, actor=actor, reason="user_disabled")

    def _check_policy(self, username: str, password: str) -> None:
        try:
            self.passwords.check_policy(username, password)
        except PasswordPolicyError as exc:
            raise AccountError(str(exc)) from exc
