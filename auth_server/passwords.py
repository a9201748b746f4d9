"""Argon2id password hashing (RFC 9106) and the password policy."""

from __future__ import annotations

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


class PasswordPolicyError(ValueError):
    """A new password breaks the policy; the message says which rule."""


class Passwords:
    def __init__(self, *, time_cost: int, memory_kib: int, parallelism: int, min_length: int):
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            type=argon2.Type.ID,
        )
        self.min_length = min_length
        # Verified against when the username is unknown, so that a miss costs as much as a hit
        # and response times do not tell which usernames exist.
        self._dummy_hash = self._hasher.hash("tessera-dummy-password")

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash or self._dummy_hash, password) and bool(
                password_hash
            )
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)

    def check_policy(self, username: str, password: str) -> None:
        if len(password) < self.min_length:
            raise PasswordPolicyError(
                f"The password must have at least {self.min_length} characters."
            )
        if password.casefold() == username.casefold():
            raise PasswordPolicyError("The password must not be the username.")
        if len(password) > 1024:
            raise PasswordPolicyError("The password must have at most 1024 characters.")
