"""PostgreSQL goes away under both services (a TCP proxy between each service and the database
is cut), then comes back without anything being restarted.

While the authorization server's database is down, everything that needs it answers 503
temporarily_unavailable with Retry-After, within a bounded time (pool timeout + connect
timeout + slack), never 500 and never a hang; liveness stays 200 so no orchestrator kills a
process that would recover by itself. The resource server passes the 503 on. The same holds for
the resource server's own database. After restore() the pools reconnect on their own.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import requests

from tests.faults.background_load import POSTGRES_ONLY, BackgroundLoad
from tests.faults.tcp_proxy import BLACKHOLE, REFUSE
from tests.support import ALICE, DEMO_APP, NOTES_API, SERVICE_APP

pytestmark = [pytest.mark.slow, POSTGRES_ONLY]

DB_POOL_TIMEOUT = 2  # shared.service.database also uses it, rounded, as the psycopg connect_timeout
CONNECT_TIMEOUT = 2
BOUND = DB_POOL_TIMEOUT + CONNECT_TIMEOUT + 2  # seconds any answer may take while it is down
RECOVERY_LIMIT = 5.0


@dataclass(frozen=True)
class Answer:
    name: str
    status: int
    body: dict
    retry_after: str | None
    elapsed: float


def _call(name: str, method: str, url: str, **kwargs) -> Answer:
    started = time.monotonic()
    response = requests.request(method, url, timeout=BOUND + 5, **kwargs)
    elapsed = time.monotonic() - started
    try:
        body = response.json()
    except ValueError:
        body = {"raw": response.text[:200]}
    return Answer(name, response.status_code, body, response.headers.get("Retry-After"), elapsed)


def _requests(auth_url: str, rs_url: str, token: str) -> dict[str, Callable[[], Answer]]:
    bearer = {"Authorization": f"Bearer {token}"}
    return {
        "AS /readyz": lambda: _call("AS /readyz", "GET", f"{auth_url}/readyz"),
        "password grant": lambda: _call(
            "password grant",
            "POST",
            f"{auth_url}/oauth/token",
            data={"grant_type": "password", "username": ALICE[0], "password": ALICE[1]},
            auth=DEMO_APP,
        ),
        "client_credentials": lambda: _call(
            "client_credentials",
            "POST",
            f"{auth_url}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=SERVICE_APP,
        ),
        "introspect": lambda: _call(
            "introspect",
            "POST",
            f"{auth_url}/oauth/introspect",
            data={"token": token},
            auth=NOTES_API,
        ),
        "RS /api/me": lambda: _call("RS /api/me", "GET", f"{rs_url}/api/me", headers=bearer),
        "RS /api/notes": lambda: _call(
            "RS /api/notes", "GET", f"{rs_url}/api/notes", headers=bearer
        ),
    }


class Load(BackgroundLoad):
    """Threads cycling through `calls` until stopped, recording every answer and its time."""

    def __init__(self, calls: list[Callable[[], Answer]], threads: int = 6) -> None:
        super().__init__(threads)
        self.calls = calls
        self.records: list[tuple[float, Answer | Exception]] = []  # (sent, answer)
        self.join_timeout = BOUND + 10

    def _run(self, offset: int) -> None:
        i = offset
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                answer: Answer | Exception = self.calls[i % len(self.calls)]()
            except requests.RequestException as exc:
                answer = exc
            with self._lock:
                self.records.append((sent, answer))
            i += 1
            time.sleep(0.005)


def _fire(calls: list[Callable[[], Answer]]) -> list[Answer]:
    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(lambda call: call(), calls))


def _assert_unavailable(answers: list[Answer]) -> None:
    for answer in answers:
        assert answer.status == 503, answer
        assert answer.retry_after is not None and answer.retry_after.isdigit(), answer
        assert int(answer.retry_after) > 0, answer
        if answer.name.endswith("/readyz"):
            assert answer.body.get("status") == "unavailable", answer
        else:
            assert answer.body.get("error") == "temporarily_unavailable", answer
        assert answer.elapsed < BOUND, answer


def _until_ok(call: Callable[[], Answer], timeout: float = 15) -> float:
    """Seconds until `call` answers 2xx, polling every 50 ms."""
    started = time.monotonic()
    last = None
    while time.monotonic() - started < timeout:
        try:
            last = call()
            if 200 <= last.status < 300:
                return time.monotonic() - started
        except requests.RequestException as exc:
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"still failing after {timeout} s: {last}")


def _summary(answers: list[Answer]) -> str:
    statuses = sorted({a.status for a in answers})
    slowest: dict[str, float] = {}
    for answer in answers:
        slowest[answer.name] = max(slowest.get(answer.name, 0.0), answer.elapsed)
    per_name = ", ".join(f"{name} {seconds:.2f}" for name, seconds in slowest.items())
    return f"{len(answers)} answers, statuses {statuses}, slowest (s): {per_name}"


@pytest.mark.parametrize("database_backend", ["postgresql"])
def test_database_down_answers_503_in_bounded_time_and_recovers_without_restart(
    make_database_url, proxies, start_auth, start_resource
):
    auth_db, notes_db = make_database_url("auth"), make_database_url("notes")
    auth_proxy, notes_proxy = proxies(), proxies()
    limits = dict(db_pool_timeout=DB_POOL_TIMEOUT, db_statement_timeout_ms=2000)
    auth = start_auth(auth_proxy.rewrite(auth_db), seed_url=auth_db, **limits)
    rs_url, _, _ = start_resource(
        notes_proxy.rewrite(notes_db), auth, create_url=notes_db, **limits
    )
    token = auth.login(scope="profile notes:read notes:write")["access_token"]
    calls = _requests(auth.url, rs_url, token)
    for call in calls.values():
        assert call().status == 200
    assert auth_proxy.live_connections > 0 and notes_proxy.live_connections > 0
    report = []

    # 1. Under load, each database is cut for a second and restored: every answer is 2xx or
    #    503, whichever statement a request had reached when its connection was reset.
    bearer = {"Authorization": f"Bearer {token}"}
    post_note = lambda: _call(  # noqa: E731
        "RS POST /api/notes", "POST", f"{rs_url}/api/notes", json={"body": "x"}, headers=bearer
    )
    with Load([*calls.values(), post_note]) as load:
        time.sleep(0.5)
        auth_proxy.cut(REFUSE)
        time.sleep(1.0)
        auth_proxy.restore()
        time.sleep(0.5)
        notes_proxy.cut(REFUSE)
        time.sleep(1.0)
        notes_proxy.restore()
        restored_at = time.monotonic()
        # long enough that requests are still sent a second after the restore even when the
        # machine is busy with other tests
        time.sleep(3.0)
    failures = [a for _, a in load.records if isinstance(a, Exception)]
    assert failures == [], failures[:3]
    answers = [a for _, a in load.records]
    statuses = Counter((a.name, a.status) for a in answers)
    assert {status for _, status in statuses} <= {200, 201, 503}, statuses
    _assert_unavailable([a for a in answers if a.status == 503])
    late = [a for sent, a in load.records if sent > restored_at + 1.0]
    assert late and all(a.status in (200, 201) for a in late), Counter(a.status for a in late)
    report.append(
        f"under load, each DB cut 1 s: {len(answers)} answers "
        f"{dict(Counter(a.status for a in answers))}; "
        f"slowest 503 {max((a.elapsed for a in answers if a.status == 503), default=0):.2f} s"
    )

    # 2. The authorization server's database refuses connections (the process is gone), and
    #    every pooled connection is reset. Three of each at once, then one more of each in
    #    sequence: the first answers meet dead pooled connections, the later ones fresh connects.
    down = [name for name in calls if name != "RS /api/notes"]
    auth_proxy.cut(REFUSE)
    answers = _fire([calls[name] for name in down for _ in range(3)])
    answers += [calls[name]() for name in down]
    _assert_unavailable(answers)
    assert requests.get(f"{auth.url}/healthz", timeout=5).status_code == 200
    report.append(f"AS DB refused: {_summary(answers)}")

    auth_proxy.restore()
    recovered = {name: _until_ok(calls[name]) for name in down}
    assert max(recovered.values()) < RECOVERY_LIMIT
    fresh = calls["password grant"]().body["access_token"]
    assert auth.is_active(fresh) and auth.is_active(token)
    report.append(
        "AS DB restored, first 200 after "
        + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in recovered.items())
    )

    # 3. The database host stops answering: connections are accepted and never served, so
    #    only the connect timeout ends the wait.
    auth_proxy.cut(BLACKHOLE)
    # One of each at a time (the RS's call adds one more at the AS): within the AS's 8 threads,
    # so the time measured is a request's own wait, not a queue behind stuck threads.
    answers = _fire([calls[name] for name in down]) + _fire([calls[name] for name in down])
    _assert_unavailable(answers)
    report.append(f"AS DB blackholed: {_summary(answers)}")
    auth_proxy.restore()
    recovered = {name: _until_ok(calls[name]) for name in down}
    assert max(recovered.values()) < RECOVERY_LIMIT
    report.append(f"AS DB restored after blackhole: all 200 within {max(recovered.values()):.2f} s")

    # 4. The resource server's own database goes away: its data and its readiness are 503,
    #    while what needs only the authorization server still works.
    notes_proxy.cut(REFUSE)
    rs_calls = [
        calls["RS /api/notes"],
        post_note,
        lambda: _call("RS /readyz", "GET", f"{rs_url}/readyz"),
    ]
    answers = _fire(rs_calls * 3) + [call() for call in rs_calls]
    _assert_unavailable(answers)
    assert calls["RS /api/me"]().status == 200
    assert requests.get(f"{rs_url}/healthz", timeout=5).status_code == 200
    report.append(f"RS DB refused: {_summary(answers)}")
    notes_proxy.restore()
    recovered = {a.name: _until_ok(call) for call, a in zip(rs_calls, answers, strict=False)}
    assert max(recovered.values()) < RECOVERY_LIMIT
    report.append(f"RS DB restored: all 200 within {max(recovered.values()):.2f} s")

    print("\n" + "\n".join(report))
