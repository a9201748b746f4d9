"""The login limit holds exactly across worker processes and replicas: two gunicorn
authorization servers (2 workers each) on one database, 40 concurrent wrong guesses, with the
counters in that database (the default) and in Redis (as compose runs)."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests
from sqlalchemy import create_engine, text

from auth_server import create_app
from tests.processes import GunicornService, free_port, settings_env
from tests.support import DEMO_APP, auth_settings, seed

pytestmark = pytest.mark.slow
GUESSES = 40
LIMIT = 10
REDIS = "redis://127.0.0.1:6379/0"


def _redis_up() -> bool:
    try:
        return redis.Redis.from_url(REDIS, socket_connect_timeout=1).ping()
    except redis.RedisError:
        return False


STORES = [
    "database",
    pytest.param(
        REDIS, marks=pytest.mark.skipif(not _redis_up(), reason="needs Redis on 127.0.0.1:6379")
    ),
]


@pytest.fixture(params=STORES, ids=["database-store", "redis-store"])
def two_replicas(request, make_database_url):
    first_port = free_port()
    settings = auth_settings(
        make_database_url("auth"),
        f"http://127.0.0.1:{first_port}",
        # A day-long window: the test cannot straddle two windows.
        login_failures_per_username_and_ip=f"{LIMIT} per day",
        # Every gunicorn thread may hash: the limit alone decides who gets in.
        password_hash_concurrency=4,
        ratelimit_storage_uri=request.param,
    )
    app = create_app(settings, create_tables=True)
    seed(app)
    # A username of its own: Redis keeps its counters across test runs.
    username = f"user-{uuid.uuid4().hex[:12]}"
    with app.app_context():
        app.extensions["tessera"].accounts().create_user(username, "right-password-1")
    replicas = [
        GunicornService("auth_server", settings_env(settings), workers=2, port=port)
        for port in (first_port, free_port())
    ]
    try:
        yield settings, username, [replica.start() for replica in replicas]
    finally:
        for replica in replicas:
            replica.stop()


def test_forty_concurrent_guesses_over_two_replicas_let_exactly_the_limit_through(two_replicas):
    settings, username, replicas = two_replicas
    barrier = threading.Barrier(GUESSES)

    def guess(n: int) -> requests.Response:
        with requests.Session() as http:
            barrier.wait()
            return http.post(
                f"{replicas[n % 2].url}/oauth/token",
                data={"grant_type": "password", "username": username, "password": f"guess-{n:04}"},
                auth=DEMO_APP,
                timeout=30,
            )

    with ThreadPoolExecutor(GUESSES) as pool:
        responses = list(pool.map(guess, range(GUESSES)))
    outcome = Counter(r.status_code for r in responses)
    print(f"{GUESSES} concurrent guesses, 2 replicas x 2 workers: {dict(outcome)}")
    assert outcome == {400: LIMIT, 429: GUESSES - LIMIT}
    assert all(int(r.headers["Retry-After"]) > 0 for r in responses if r.status_code == 429)
    engine = create_engine(settings.auth_database_url)
    try:
        with engine.connect() as conn:
            hashed = conn.scalar(
                text("SELECT count(*) FROM audit_events WHERE event = 'login_failed'")
            )
    finally:
        engine.dispose()
    assert hashed == LIMIT  # exactly LIMIT password checks ran; the rest were refused first
