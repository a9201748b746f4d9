"""Argon2id password hashing (RFC 9106) and the password policy.

One hash costs PASSWORD_HASH_MEMORY_KIB of memory and keeps PASSWORD_HASH_PARALLELISM threads
busy for a few hundred milliseconds: on a small machine a handful of concurrent logins take
every core. So each worker process runs at most `max_concurrent` hashes at once, in threads of
its own whose nice value is raised (the lane threads libargon2 starts inherit it): a hash
beyond the bound is refused at once (PasswordHashingBusy: 503 with Retry-After), and the hashes
that do run take only CPU time that other requests, introspection above all, leave idle.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

log = logging.getLogger("tessera.auth.passwords")
T = TypeVar("T")
# Seconds a client is asked to wait when every hashing slot is taken: about three hashes.
HASHING_BUSY_RETRY_AFTER = 1


class PasswordPolicyError(ValueError):
    """A new password breaks the policy; the message says which rule."""


class PasswordHashingBusy(Exception):
    """Every hashing slot of this worker is taken; the caller should answer 503 + Retry-After
    at once rather than queue (a queue of hashes is what starved every other request)."""

    retry_after = HASHING_BUSY_RETRY_AFTER


def _under_gevent() -> bool:
    """True in a gevent worker: `threading` is then monkey-patched, and a ThreadPoolExecutor's
    "threads" are greenlets of the worker's one OS thread (a hash there would stop every other
    request of the worker, and renicing it would renice the whole worker)."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("threading")


def _on_os_thread(niceness: int, work: Callable[..., T], *args) -> T:
    _lower_priority(niceness)
    return work(*args)


def _lower_priority(niceness: int) -> None:
    if niceness and hasattr(os, "setpriority"):
        try:
            # Linux: PRIO_PROCESS with a thread id sets that thread's nice value only.
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
        except OSError:
            log.warning("could not lower the priority of the password-hashing thread")


class Passwords:
    def __init__(
        self,
        *,
        time_cost: int,
        memory_kib: int,
        parallelism: int,
        min_length: int,
        max_concurrent: int | None = None,
        niceness: int = 0,
    ):
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
        # None: unbounded, in the caller's thread (the CLI, and tests that need no bound).
        self._slots = threading.BoundedSemaphore(max_concurrent) if max_concurrent else None
        self._held = threading.local()
        self._niceness = niceness
        self._executor = (
            ThreadPoolExecutor(
                max_workers=max_concurrent,
                thread_name_prefix="argon2",
                initializer=_lower_priority,
                initargs=(niceness,),
            )
            if max_concurrent
            else None
        )

    busy_retry_after = HASHING_BUSY_RETRY_AFTER

    def busy(self) -> bool:
        """Every slot is taken right now (a hint: the slot itself decides)."""
        if self._slots is None or getattr(self._held, "slot", False):
            return False
        if self._slots.acquire(blocking=False):
            self._slots.release()
            return False
        return True

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of this worker's hashing slots for the `with` block, or raise
        PasswordHashingBusy at once. Views take it before anything else a password check
        costs (the throttle's database writes), so a refused login is as cheap as it can be;
        hash() and verify() inside the block use it instead of taking another."""
        if self._slots is None or getattr(self._held, "slot", False):
            yield
            return
        if not self._slots.acquire(blocking=False):
            raise PasswordHashingBusy()
        self._held.slot = True
        try:
            yield
        finally:
            self._held.slot = False
            self._slots.release()

    def _bounded(self, work: Callable[..., T], *args) -> T:
        if self._slots is None:
            return work(*args)
        with self.slot():
            if _under_gevent():
                import gevent  # only ever imported where gevent already runs

                # gevent's own pool runs real OS threads; this greenlet waits cooperatively.
                return gevent.get_hub().threadpool.apply(
                    _on_os_thread, (self._niceness, work, *args)
                )
            assert self._executor is not None  # made with the slots
            return self._executor.submit(work, *args).result()

    def hash(self, password: str) -> str:
        return self._bounded(self._hasher.hash, password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        return self._bounded(self._verify, password_hash, password)

    def _verify(self, password_hash: str | None, password: str) -> bool:
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
