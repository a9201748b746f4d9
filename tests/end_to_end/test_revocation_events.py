"""The opt-in introspection cache of the resource server (INTROSPECTION_CACHE_TTL) against a
real authorization server publishing revocation events through a real Redis: cached answers
spare the authorization server, every kind of revocation reaches the API on its very next
request, and a broken channel means every request is introspected until the cache, flushed,
is in step again."""

from __future__ import annotations

import contextlib
import json
import logging
import uuid

import pytest
import redis
import requests

import resource_server
from resource_server import SUBSCRIBER_KEY
from shared.protocol import revocation_events
from tests.auth_server.test_authorization_code import exchange, get_code
from tests.processes import GunicornService, settings_env
from tests.support import (
    ALICE,
    BOB,
    DEMO_APP,
    SERVICE_APP,
    resource_settings,
    start_auth_server,
    start_resource_server,
)
from tests.tcp_proxy import SeverableProxy

REDIS = "redis://127.0.0.1:6379/0"


def _redis_up() -> bool:
    try:
        return redis.Redis.from_url(REDIS, socket_connect_timeout=1).ping()
    except redis.RedisError:
        return False


pytestmark = pytest.mark.skipif(not _redis_up(), reason="needs Redis on 127.0.0.1:6379")


@pytest.fixture
def channel() -> str:
    # One channel per test: tests running at the same time never see each other's events.
    return f"tessera-test:{uuid.uuid4().hex}"


@pytest.fixture
def auth(serve, make_database_url, channel):
    return start_auth_server(
        serve,
        make_database_url("auth"),
        revocation_events_url=REDIS,
        revocation_events_channel=channel,
    )


@pytest.fixture
def start_cached_api(serve, make_database_url, auth, channel):
    """Factory: a notes API with the cache on, subscribed (live) before it is returned."""
    subscribers = []

    def start(events_url: str = REDIS, **overrides):
        api = start_resource_server(
            serve,
            make_database_url(f"notes{len(subscribers)}"),
            auth,
            introspection_cache_ttl=60,
            revocation_events_url=events_url,
            revocation_events_channel=channel,
            **overrides,
        )
        subscriber = api.app.extensions[SUBSCRIBER_KEY]
        subscribers.append(subscriber)
        assert subscriber.wait_live(10)
        return api

    yield start
    for subscriber in subscribers:
        subscriber.stop()


@pytest.fixture
def cached_api(start_cached_api):
    return start_cached_api()


def introspections(auth) -> float:
    """Introspection answers the authorization server gave, active and inactive."""
    registry = auth.app.extensions["tessera"].metrics.registry
    return sum(
        registry.get_sample_value("tessera_introspections_total", {"result": result}) or 0
        for result in ("active", "inactive")
    )


def cache_lookups(api, outcome: str) -> float:
    registry = api.app.extensions["tessera_metrics"].registry
    value = registry.get_sample_value("tessera_introspection_cache_total", {"outcome": outcome})
    return value or 0


def warm(api, auth, token: str) -> None:
    """Two requests with ``token``: the first introspected, the second from the cache."""
    assert api.get("/api/me", token).status_code == 200
    before = introspections(auth)
    assert api.get("/api/me", token).status_code == 200
    assert introspections(auth) == before, "the second request was not answered from the cache"


def test_a_cached_answer_spares_the_authorization_server(auth, cached_api):
    token = auth.login()["access_token"]
    before = introspections(auth)
    for _ in range(5):
        response = cached_api.get("/api/me", token)
        assert response.status_code == 200
        assert response.json()["sub"] == auth.introspect(token).json()["sub"]
    # 5 requests, 1 introspection by the API (and 5 by this test's own comparisons)
    assert introspections(auth) - before == 1 + 5
    assert cache_lookups(cached_api, "hit") == 4
    assert cache_lookups(cached_api, "miss") == 1


def test_the_default_mode_introspects_every_request(auth, notes_api):
    token = auth.login()["access_token"]
    before = introspections(auth)
    for _ in range(3):
        assert notes_api.get("/api/me", token).status_code == 200
    assert introspections(auth) - before == 3
    assert SUBSCRIBER_KEY not in notes_api.app.extensions


def _revoke_access_token(auth, login):
    assert auth.revoke(login["access_token"], token_type_hint="access_token").status_code == 200


def _logout(auth, login):
    assert auth.revoke(login["refresh_token"], token_type_hint="refresh_token").status_code == 200


def _change_password(auth, login):
    response = requests.post(
        f"{auth.url}/account/password",
        auth=DEMO_APP,
        timeout=5,
        data={"username": "alice", "current_password": ALICE[1], "new_password": "looking-glass"},
    )
    assert response.status_code == 200, response.text


def _cli(*args):
    def run(auth, login):
        result = auth.app.test_cli_runner().invoke(args=list(args))
        assert result.exit_code == 0, result.output

    return run


def _refresh_reuse(auth, login):
    assert auth.refresh(login["refresh_token"]).status_code == 200
    assert auth.refresh(login["refresh_token"]).json()["error"] == "invalid_grant"


REVOCATIONS = {
    "rfc7009_access_token": _revoke_access_token,
    "logout": _logout,
    "password_change": _change_password,
    "users_set_password": _cli("users", "set-password", "alice", "--password", "a-new-password-1"),
    "users_revoke_tokens": _cli("users", "revoke-tokens", "alice"),
    "users_disable": _cli("users", "disable", "alice"),
    "clients_disable": _cli("clients", "disable", "demo-app"),
    "refresh_reuse": _refresh_reuse,
}


@pytest.mark.parametrize("kind", sorted(REVOCATIONS))
def test_each_revocation_reaches_the_cache_before_the_next_request(kind, auth, cached_api):
    login = auth.login()
    bystander = auth.login(BOB, client=("other-app", "other-app-secret"))["access_token"]
    warm(cached_api, auth, login["access_token"])
    warm(cached_api, auth, bystander)
    REVOCATIONS[kind](auth, login)
    # No waiting, no polling: the very next request is refused.
    response = cached_api.get("/api/me", login["access_token"])
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    # The event named only what it revoked: another user's entry is still served from cache.
    before = introspections(auth)
    assert cached_api.get("/api/me", bystander).status_code == 200
    assert introspections(auth) == before


def test_a_client_credentials_token_goes_with_its_client(auth, cached_api):
    token = auth.token(SERVICE_APP, grant_type="client_credentials", scope="notes:read").json()
    warm_token = token["access_token"]
    assert cached_api.get("/api/notes", warm_token).status_code == 200
    assert cached_api.get("/api/notes", warm_token).status_code == 200
    result = auth.app.test_cli_runner().invoke(args=["clients", "disable", "service-app"])
    assert result.exit_code == 0, result.output
    assert cached_api.get("/api/notes", warm_token).status_code == 401


def test_authorization_code_reuse_reaches_the_cache_before_the_next_request(auth, cached_api):
    code, verifier, _ = get_code(auth)
    first = exchange(auth, code, verifier).json()
    warm(cached_api, auth, first["access_token"])
    assert exchange(auth, code, verifier).json()["error"] == "invalid_grant"
    assert cached_api.get("/api/me", first["access_token"]).status_code == 401


def test_every_replica_drops_the_revoked_token(auth, start_cached_api):
    replicas = [start_cached_api() for _ in range(3)]
    login = auth.login()
    for replica in replicas:
        warm(replica, auth, login["access_token"])
    _logout(auth, login)
    assert [r.get("/api/me", login["access_token"]).status_code for r in replicas] == [401] * 3


def test_key_retirement_makes_the_replicas_ask_again(auth, cached_api):
    """Retiring a signing key revokes nothing (docs/architecture.md): its event only drops the
    answers about tokens that key signed, and the authorization server is asked again."""
    token = auth.login()["access_token"]
    warm(cached_api, auth, token)
    before = introspections(auth)
    _cli("keys", "rotate")(auth, None)
    assert cached_api.get("/api/me", token).status_code == 200
    assert introspections(auth) == before + 1


def test_negative_answers_are_cached_briefly(auth, start_cached_api):
    api = start_cached_api(introspection_cache_negative_ttl=60)
    before = introspections(auth)
    for _ in range(3):
        assert api.get("/api/me", "not-a-token-anyone-issued").status_code == 401
    assert introspections(auth) - before == 1
    no_negative = start_cached_api(introspection_cache_negative_ttl=0)
    before = introspections(auth)
    for _ in range(3):
        assert no_negative.get("/api/me", "not-a-token-anyone-issued").status_code == 401
    assert introspections(auth) - before == 3


def test_a_broken_channel_means_every_request_is_introspected_until_resubscribed(
    auth, start_cached_api
):
    proxy = SeverableProxy("127.0.0.1", 6379)
    try:
        api = start_cached_api(events_url=proxy.url)
        subscriber = api.app.extensions[SUBSCRIBER_KEY]
        login, other = auth.login(), auth.login()
        warm(api, auth, login["access_token"])
        warm(api, auth, other["access_token"])
        proxy.sever()
        # The subscriber notices, and flushes what a lost event could have left stale.
        assert _poll(lambda: not subscriber.is_live() and len(subscriber.cache) == 0)
        # Down: every request goes to the authorization server...
        before = introspections(auth)
        for _ in range(3):
            assert api.get("/api/me", other["access_token"]).status_code == 200
        assert introspections(auth) - before == 3
        # ...so a revocation whose event this replica never gets is seen at once all the same.
        _logout(auth, login)
        assert api.get("/api/me", login["access_token"]).status_code == 401
        subscriptions = subscriber.subscriptions
        proxy.restore()
        assert _poll(lambda: subscriber.subscriptions > subscriptions and subscriber.is_live())
        # Resubscribed with an empty cache: the first request is introspected, the next is not.
        assert len(subscriber.cache) == 0
        warm(api, auth, other["access_token"])
        assert api.get("/api/me", login["access_token"]).status_code == 401
    finally:
        proxy.close()


def test_an_unreadable_event_drops_the_whole_cache(auth, cached_api, channel):
    token = auth.login()["access_token"]
    warm(cached_api, auth, token)
    subscriber = cached_api.app.extensions[SUBSCRIBER_KEY]
    redis.Redis.from_url(REDIS).publish(channel, b'{"not": "an event"}')
    assert _poll(lambda: len(subscriber.cache) == 0)


def test_an_event_is_a_caep_session_revoked_set_naming_no_secret(auth, cached_api, channel):
    pubsub = redis.Redis.from_url(REDIS).pubsub()
    pubsub.subscribe(channel)
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"
    login = auth.login()
    warm(cached_api, auth, login["access_token"])
    sid = auth.introspect(login["access_token"]).json()["sid"]
    with tessera_log() as lines:
        _logout(auth, login)
        assert cached_api.get("/api/me", login["access_token"]).status_code == 401
        # The subscriber's thread may log a moment after the 401 (it need not have run yet).
        assert _poll(lambda: any("cached answers dropped" in line for line in lines))
    message = pubsub.get_message(timeout=5)
    pubsub.close()
    body = json.loads(message["data"])
    assert set(body) == {"iss", "jti", "iat", "events"}
    assert body["iss"] == auth.settings.auth_issuer
    event = body["events"][revocation_events.SESSION_REVOKED]
    assert event["subject"] == {"format": "complex", "session": {"format": "opaque", "id": sid}}
    assert event["reason_admin"] == {"en": "logout"}
    # Both sides logged the event (the publisher and the subscriber), by sid only.
    text = "\n".join(lines)
    assert "revocation event published" in text
    for secret in (login["access_token"], login["refresh_token"]):
        assert secret not in message["data"].decode()
        assert secret not in text


@contextlib.contextmanager
def tessera_log():
    """Every line the `tessera` loggers write meanwhile, at DEBUG (they do not propagate)."""
    lines: list[str] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = logging.getLogger("tessera")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_the_cache_keeps_no_token_in_its_keys(auth, cached_api):
    token = auth.login()["access_token"]
    warm(cached_api, auth, token)
    cache = cached_api.app.extensions[SUBSCRIBER_KEY].cache
    assert all(isinstance(key, bytes) and len(key) == 32 for key in cache._entries)
    assert all(token.encode() not in key for key in cache._entries)


def test_an_unreachable_publisher_still_answers_and_counts_the_failure(serve, make_database_url):
    auth = start_auth_server(
        serve,
        make_database_url("auth"),
        revocation_events_url="redis://127.0.0.1:1/0",
        revocation_events_publish_timeout=0.2,
    )
    login = auth.login()
    _logout(auth, login)
    assert not auth.is_active(login["access_token"])
    registry = auth.app.extensions["tessera"].metrics.registry
    failed = registry.get_sample_value("tessera_revocation_events_total", {"result": "failed"})
    assert failed == 1


def _poll(condition, timeout: float = 10.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_gevent_workers_under_gunicorn_drop_the_revoked_token_before_the_next_request(
    auth, make_database_url, channel
):
    """The deployed shape: gevent workers, where the subscriber is a greenlet."""
    settings = resource_settings(
        make_database_url("notes"),
        auth,
        introspection_cache_ttl=60,
        revocation_events_url=REDIS,
        revocation_events_channel=channel,
    )
    resource_server.create_app(settings, create_tables=True)
    api = GunicornService("resource_server", settings_env(settings), workers=2).start()
    try:
        login = auth.login()
        http = requests.Session()
        headers = {"Authorization": f"Bearer {login['access_token']}"}

        def cache_hits() -> float:
            prefix = 'tessera_introspection_cache_total{outcome="hit"}'
            for line in requests.get(api.metrics_url, timeout=5).text.splitlines():
                if line.startswith(prefix):
                    return float(line.rsplit(" ", 1)[1])
            return 0.0

        # Requests, each on a new connection so that either worker may take it, until 10 were
        # answered from a cache: most likely both workers hold the token by then.
        assert _poll(
            lambda: (
                requests.get(f"{api.url}/api/me", headers=headers, timeout=5).ok
                and cache_hits() >= 10
            ),
            timeout=20,
        )
        assert http.get(f"{api.url}/api/me", headers=headers, timeout=5).status_code == 200
        _logout(auth, login)
        for _ in range(20):
            assert requests.get(f"{api.url}/api/me", headers=headers, timeout=5).status_code == 401
    finally:
        api.stop()
