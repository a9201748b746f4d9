"""Refresh rotation decided by the database, with several gunicorn worker processes serving
concurrent uses of one refresh token (a Python lock could not do this)."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support import DEMO_APP

pytestmark = pytest.mark.slow
THREADS = 50


def _fire(auth, refresh_token: str) -> list[requests.Response]:
    barrier = threading.Barrier(THREADS)

    def one(_):
        with requests.Session() as http:
            barrier.wait()
            return http.post(
                f"{auth.url}/oauth/token",
                data={"grant_type": "refresh_token", "refresh_token": refresh_token},
                auth=DEMO_APP,
                timeout=30,
            )

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(one, range(THREADS)))


def test_fifty_concurrent_refreshes_across_workers_yield_one_successor(gunicorn_auth):
    auth = gunicorn_auth(workers=3)
    login = auth.login()
    responses = _fire(auth, login["refresh_token"])
    outcome = Counter(r.status_code for r in responses)
    print(f"50 concurrent refreshes, 3 workers: {dict(outcome)}")
    assert outcome == {200: 1, 400: THREADS - 1}
    assert {r.json()["error"] for r in responses if r.status_code == 400} == {"invalid_grant"}


def test_fifty_concurrent_refreshes_in_grace_share_one_successor(gunicorn_auth):
    auth = gunicorn_auth(workers=3, refresh_reuse_grace=30)
    login = auth.login()
    responses = _fire(auth, login["refresh_token"])
    assert [r.status_code for r in responses] == [200] * THREADS
    successors = {r.json()["refresh_token"] for r in responses}
    print(f"50 concurrent refreshes in grace, 3 workers: {len(successors)} distinct successor")
    assert len(successors) == 1
    assert auth.is_active(successors.pop())
