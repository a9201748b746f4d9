"""The authorization server dies (SIGKILL, every gunicorn process) while a resource server is
under load, then comes back on the same port.

While it is dead the resource server cannot tell a valid token from a revoked one, so it must
answer 503 with Retry-After: never 401 (the token is fine), never 200 (nobody vouched for it),
never 500. Once the authorization server answers again, the resource server's pooled
keep-alive connections to the dead process must not keep it failing.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass

import pytest
import requests

from tests.faults.background_load import BackgroundLoad

pytestmark = pytest.mark.slow

CLIENTS = 6
PAUSE = 0.005  # between one client's requests: thousands of requests, not millions
DEAD_FOR = 1.5  # seconds the authorization server stays dead
RUN_AFTER_RECOVERY = 1.0
RECOVERY_LIMIT = 1.0


@dataclass(frozen=True)
class Outcome:
    sent: float
    answered: float
    status: int | None  # None: no HTTP answer at all
    retry_after: str | None = None
    error: str | None = None


class Hammer(BackgroundLoad):
    """CLIENTS threads calling GET /api/me with one token until stopped."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(CLIENTS)
        self.url = url
        self.token = token
        self.outcomes: list[Outcome] = []

    def _run(self, index: int) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        with requests.Session() as http:
            while not self._stop.is_set():
                sent = time.monotonic()
                try:
                    response = http.get(f"{self.url}/api/me", headers=headers, timeout=10)
                except requests.RequestException as exc:
                    outcome = Outcome(sent, time.monotonic(), None, error=repr(exc))
                else:
                    body = response.json() if response.status_code != 200 else {}
                    outcome = Outcome(
                        sent,
                        time.monotonic(),
                        response.status_code,
                        response.headers.get("Retry-After"),
                        body.get("error"),
                    )
                with self._lock:
                    self.outcomes.append(outcome)
                time.sleep(PAUSE)

    def first_ok_after(self, moment: float) -> float | None:
        with self._lock:
            times = [o.answered for o in self.outcomes if o.status == 200 and o.sent > moment]
        return min(times, default=None)


def _wait_for_healthz(url: str, timeout: float = 30) -> float:
    """Poll the restarted server's /healthz every 10 ms; the moment it first answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/healthz", timeout=1).status_code == 200:
                return time.monotonic()
        except requests.RequestException:
            pass
        time.sleep(0.01)
    raise AssertionError(f"{url} did not come back within {timeout} s")


def test_resource_server_answers_503_while_auth_server_is_dead_and_recovers_at_once(
    make_database_url, start_auth, restart_auth, start_resource
):
    auth = start_auth(make_database_url("auth"))
    rs_url, _, _ = start_resource(make_database_url("notes"), auth)
    token = auth.login(scope="profile")["access_token"]

    with Hammer(rs_url, token) as hammer:
        time.sleep(1.0)
        killed_at = time.monotonic()
        auth.server.kill()
        dead_from = time.monotonic()
        time.sleep(DEAD_FOR)
        restarting_at = time.monotonic()
        # The restart polls /healthz itself; ours, every 10 ms in parallel, times it closely.
        healthy = {}
        prober = threading.Thread(
            target=lambda: healthy.setdefault("at", _wait_for_healthz(auth.url)), daemon=True
        )
        prober.start()
        restart_auth(auth)
        prober.join(timeout=30)
        healthy_at = healthy["at"]
        deadline = healthy_at + 10
        while hammer.first_ok_after(dead_from) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(RUN_AFTER_RECOVERY)

    outcomes = hammer.outcomes
    before = [o for o in outcomes if o.answered < killed_at]
    dead = [o for o in outcomes if o.sent > dead_from and o.answered < restarting_at]
    after = [o for o in outcomes if o.sent > healthy_at]
    first_ok = hammer.first_ok_after(dead_from)
    recovery = None if first_ok is None else first_ok - healthy_at
    statuses = Counter(o.status for o in outcomes)
    print(
        f"\nAS SIGKILL under load ({CLIENTS} clients, {len(outcomes)} RS requests): "
        f"all {dict(statuses)}; before kill {dict(Counter(o.status for o in before))}; "
        f"AS dead {dict(Counter(o.status for o in dead))}; "
        f"after restart {dict(Counter(o.status for o in after))}; "
        f"AS /healthz -> first RS 200: {recovery if recovery is None else round(recovery, 3)} s"
        + (" (the RS had its 200 before our 10 ms /healthz probe)" if (recovery or 0) < 0 else "")
    )

    assert [o for o in outcomes if o.status is None] == [], "the resource server must answer"
    assert set(statuses) <= {200, 503}, f"only 200 or 503, never 401/500: {dict(statuses)}"
    assert before and all(o.status == 200 for o in before)
    assert len(dead) >= CLIENTS, "the clients kept calling while the AS was dead"
    assert all(o.status == 503 for o in dead), "no 200 (nor anything else) while the AS is dead"
    for o in outcomes:
        if o.status == 503:
            assert o.error == "temporarily_unavailable"
            assert o.retry_after is not None and o.retry_after.isdigit()
            assert int(o.retry_after) > 0
    assert recovery is not None, "the resource server never answered 200 again"
    assert recovery < RECOVERY_LIMIT
    # Once recovered it stays recovered: nothing after the first 200 is a 503 for long.
    late = [o for o in after if o.sent > first_ok + 0.2]
    assert late and all(o.status == 200 for o in late)
