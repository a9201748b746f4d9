"""Login throttling shared by replicas through Redis, and the client IP behind a proxy."""

from __future__ import annotations

import uuid

import pytest
import redis

from auth_server import create_app
from tests.support import AuthServer, auth_settings, start_auth_server

REDIS = "redis://127.0.0.1:6379/0"


def _redis_up() -> bool:
    try:
        return redis.Redis.from_url(REDIS, socket_connect_timeout=1).ping()
    except redis.RedisError:
        return False


pytestmark = pytest.mark.skipif(not _redis_up(), reason="needs Redis on 127.0.0.1:6379")


def _replica(serve, first: AuthServer, **overrides) -> AuthServer:
    server = serve()
    settings = auth_settings(first.settings.auth_database_url, server.url, **overrides)
    server.mount(create_app(settings))
    return AuthServer(url=server.url, app=server.app, settings=settings, server=server)


def test_failed_logins_counted_on_one_replica_lock_out_on_the_other(serve, make_database_url):
    limits = dict(ratelimit_storage_uri=REDIS, login_failures_per_username="3 per minute")
    one = start_auth_server(serve, make_database_url("auth"), **limits)
    two = _replica(serve, one, **limits)
    username = f"user-{uuid.uuid4().hex[:10]}"
    with one.app.app_context():
        one.app.extensions["tessera"].accounts().create_user(username, "right-password-1")
    for replica in (one, two, one):
        wrong = replica.token(grant_type="password", username=username, password="nope-nope-1")
        assert wrong.status_code == 400
    locked = two.token(grant_type="password", username=username, password="right-password-1")
    assert locked.status_code == 429
    assert int(locked.headers["Retry-After"]) > 0


def test_per_ip_limit_uses_the_forwarded_address_only_from_trusted_proxies(
    serve, make_database_url
):
    limits = dict(
        ratelimit_storage_uri=REDIS, login_failures_per_ip="2 per minute", trusted_proxies=1
    )
    auth = start_auth_server(serve, make_database_url("auth"), **limits)
    # A /64 of its own (IPv6 counts per /64): Redis keeps counters across test runs.
    attacker = f"2001:db8:{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}::1"
    for n in range(2):
        response = auth.http.post(
            f"{auth.url}/oauth/token",
            auth=("demo-app", "demo-app-secret"),
            timeout=5,
            headers={"X-Forwarded-For": attacker},
            data={"grant_type": "password", "username": f"nobody{n}", "password": "x" * 10},
        )
        assert response.status_code == 400
    blocked = auth.http.post(
        f"{auth.url}/oauth/token",
        auth=("demo-app", "demo-app-secret"),
        timeout=5,
        headers={"X-Forwarded-For": attacker},
        data={"grant_type": "password", "username": "alice", "password": "wonderland"},
    )
    assert blocked.status_code == 429
    # another client address behind the same proxy is not blocked
    assert (
        auth.http.post(
            f"{auth.url}/oauth/token",
            auth=("demo-app", "demo-app-secret"),
            timeout=5,
            headers={"X-Forwarded-For": "198.51.100.7"},
            data={"grant_type": "password", "username": "alice", "password": "wonderland"},
        ).status_code
        == 200
    )
