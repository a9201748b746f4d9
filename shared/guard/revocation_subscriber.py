"""Keeps one process's introspection cache in step with the revocation channel (Redis pub/sub).

A daemon thread (a greenlet under gevent workers) subscribes, flushes the cache, and only then
says the channel is live; it applies every event as it arrives. When anything goes wrong (the
connection drops, Redis stops answering its pings, an event does not parse) it says the
channel is down and flushes, so every request is introspected until it has subscribed again:
an event missed meanwhile can leave nothing stale behind.

Between Redis writing an event to this process's socket and the thread applying it, a request
could still find the old entry; so ``is_live`` is also false while unread bytes wait on the
socket or the thread is reading and applying them, and such a request introspects instead.
Redis writes an event to its subscribers in the same pass as its answer to the publisher, so
once a revoking call has answered, its event is (on one host, and in practice on a LAN) on
this socket before the client's next request arrives, and that request is not served the
revoked answer. A socket numbered 1024 or above cannot be polled with select(): the request
then introspects (never stale, only slower).
"""

from __future__ import annotations

import logging
import select
import selectors
import socket
import threading
import time
from collections.abc import Callable

import redis
from redis.client import PubSub

from shared.guard.introspection_cache import ChannelState, IntrospectionCache
from shared.protocol import revocation_events as events

log = logging.getLogger("tessera.revocation_events")


class RevocationSubscriber(ChannelState):
    def __init__(
        self,
        redis_url: str,
        channel: str,
        cache: IntrospectionCache,
        *,
        issuer: str | None,
        ping_interval: float = 1.0,
        dead_after: float = 3.0,
        retry_delay: float = 0.5,
        on_event: Callable[[str], None] = lambda _outcome: None,
    ) -> None:
        self.redis_url = redis_url
        self.channel = channel
        self.cache = cache
        self.issuer = issuer
        self.ping_interval = ping_interval
        self.dead_after = dead_after
        self.retry_delay = retry_delay
        self._on_event = on_event
        self._live = False
        self._socket: socket.socket | None = None
        self._reading = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        # How many times the channel became live: tests wait for a resubscription with it.
        self.subscriptions = 0

    def start(self) -> RevocationSubscriber:
        self._thread = threading.Thread(target=self._run, name="revocation-subscriber", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._go_down()
        if self._thread is not None:
            self._thread.join(timeout)

    def is_live(self) -> bool:
        sock = self._socket
        if not self._live or sock is None:
            return False
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return False
        # The socket first, then the flag: the subscriber raises the flag before it reads.
        return not readable and not self._reading

    def wait_live(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._live:
                return True
            self._stopping.wait(0.01)
        return self._live

    def _run(self) -> None:
        while not self._stopping.is_set():
            client = redis.Redis.from_url(
                self.redis_url, socket_connect_timeout=self.dead_after, socket_keepalive=True
            )
            # redis-py leaves Redis.pubsub unannotated
            pubsub: PubSub = client.pubsub()  # type: ignore[no-untyped-call]
            try:
                self._listen(pubsub)
            except Exception as exc:  # noqa: BLE001 - any failure: down, flush, subscribe again
                if not self._stopping.is_set():
                    log.warning(
                        "revocation channel lost (%s: %s): introspecting every request until "
                        "resubscribed",
                        type(exc).__name__,
                        exc,
                    )
            finally:
                self._go_down()
                try:
                    pubsub.close()
                    client.close()
                except Exception as exc:  # noqa: BLE001 - the connection is already broken
                    log.debug("closing the broken subscription: %s", exc)
            self._stopping.wait(self.retry_delay)

    def _listen(self, pubsub: PubSub) -> None:
        pubsub.subscribe(self.channel)
        confirmed = pubsub.get_message(timeout=self.dead_after)
        if not confirmed or confirmed.get("type") != "subscribe":
            raise ConnectionError("no subscription confirmation")
        # Whatever was cached before may have been revoked while nobody listened.
        self.cache.flush()
        # redis-py types PubSub.connection as None; subscribe() has just set it
        sock: socket.socket = pubsub.connection._sock  # type: ignore[attr-defined]
        self._socket = sock
        self._live = True
        self.subscriptions += 1
        log.info("revocation channel %s subscribed; cache flushed", self.channel)
        selector = selectors.DefaultSelector()
        selector.register(sock, selectors.EVENT_READ)
        try:
            self._loop(pubsub, sock, selector)
        finally:
            selector.close()

    def _loop(self, pubsub: PubSub, sock: socket.socket, selector: selectors.BaseSelector) -> None:
        last_heard = time.monotonic()
        last_ping = last_heard
        while not self._stopping.is_set():
            if selector.select(self.ping_interval):
                # Set before the bytes leave the socket and cleared once their events are
                # applied: is_live() sees one or the other, never neither (module docstring).
                self._reading = True
                try:
                    while (message := pubsub.get_message(timeout=0)) is not None:
                        last_heard = time.monotonic()
                        if message.get("type") == "message":
                            self._apply(message.get("data"))
                finally:
                    self._reading = False
            now = time.monotonic()
            if now - last_heard > self.dead_after:
                raise ConnectionError(f"no answer from Redis for {self.dead_after:g} s")
            if now - last_ping >= self.ping_interval:
                pubsub.ping()
                last_ping = now

    def _apply(self, body: bytes | str) -> None:
        try:
            targets = events.targets(body, self.issuer)
        except (ValueError, TypeError, AttributeError) as exc:
            log.error("unreadable revocation event (%s): the whole cache is dropped", exc)
            self.cache.flush()
            self._on_event("unreadable")
            return
        dropped = self.cache.drop(targets)
        log.info("revocation event %s: %s cached answers dropped", targets, dropped)
        self._on_event("applied")

    def _go_down(self) -> None:
        self._live = False
        self._socket = None
        self.cache.flush()
