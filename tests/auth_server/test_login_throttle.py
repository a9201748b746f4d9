"""Login throttling that bounds guessing without letting anyone lock a user out, on every path
that checks a password (password grant, login page, /account/password), over real HTTP.

Addresses come from X-Forwarded-For through one trusted proxy (TRUSTED_PROXIES=1), as behind
the compose proxy: the last address is the one the proxy saw.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import func, select, text

from auth_server.db import db
from auth_server.models import AuditEvent
from tests.support import (
    ALICE,
    DEMO_APP,
    Browser,
    FakeClock,
    code_request,
    pkce_pair,
    start_auth_server,
)

ATTACKER = "203.0.113.5"
USER_ADDRESS = "198.51.100.7"
WRONG = "not-the-password-1"
NEW_PASSWORD = "a-brand-new-password-1"


class LoginPath:
    """One way to check alice's password, from a given client address (behind the proxy).
    `attempt` answers "ok", "wrong", "throttled" or "busy", checking the path's status codes."""

    def __init__(self, auth, address: str):
        self.auth = auth
        self.http = requests.Session()
        self.http.headers["X-Forwarded-For"] = address

    def outcome(self, response, ok: int, wrong: int) -> str:
        if response.status_code == 429:
            assert int(response.headers["Retry-After"]) > 0
            return "throttled"
        if response.status_code == 503:
            assert int(response.headers["Retry-After"]) > 0
            return "busy"
        assert response.status_code in (ok, wrong), response.text
        return "ok" if response.status_code == ok else "wrong"


class PasswordGrant(LoginPath):
    def attempt(self, password: str) -> str:
        response = self.http.post(
            f"{self.auth.url}/oauth/token",
            data={"grant_type": "password", "username": ALICE[0], "password": password},
            auth=DEMO_APP,
            timeout=10,
        )
        if response.status_code == 429:
            assert response.json()["error"] == "invalid_request"
            assert response.headers["Cache-Control"] == "no-store"
        return self.outcome(response, 200, 400)


class LoginPage(LoginPath):
    def __init__(self, auth, address: str):
        super().__init__(auth, address)
        self.browser = Browser(auth, self.http)
        _, challenge = pkce_pair()
        self.page = self.browser.authorize(**code_request(challenge=challenge))
        assert self.page.status_code == 200

    def attempt(self, password: str) -> str:
        # 303 to the client with a code; a wrong password shows the form again (200).
        return self.outcome(self.browser.submit(self.page, password=password), 303, 200)


class AccountPassword(LoginPath):
    def attempt(self, password: str) -> str:
        response = self.http.post(
            f"{self.auth.url}/account/password",
            data={"username": ALICE[0], "current_password": password, "new_password": NEW_PASSWORD},
            auth=DEMO_APP,
            timeout=10,
        )
        return self.outcome(response, 200, 400)


PATHS = [PasswordGrant, LoginPage, AccountPassword]


def failed_logins(auth) -> int:
    with auth.app.app_context():
        return db.session.scalar(
            select(func.count()).where(AuditEvent.event == "login_failed").select_from(AuditEvent)
        )


def count_hashes(auth) -> list[int]:
    """A list that grows by one on every Argon2 verification the server runs."""
    passwords = auth.app.extensions["tessera"].passwords
    calls, verify = [], passwords.verify
    passwords.verify = lambda *args: calls.append(1) or verify(*args)
    return calls


def counter_rows(auth) -> int:
    with auth.app.app_context():
        return db.session.scalar(text("SELECT count(*) FROM login_attempts"))


@pytest.fixture
def proxied_auth(serve, make_database_url):
    return start_auth_server(serve, make_database_url("auth"), trusted_proxies=1)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.__name__)
def test_guessing_from_one_address_does_not_lock_the_user_out(proxied_auth, path):
    """30 wrong passwords from one address: that address is throttled after the
    username-and-address limit (10), the real user with the right password from another
    address gets in, on every path that checks a password (ASVS V2.2.1, NIST 800-63B §5.2.2)."""
    hashes = count_hashes(proxied_auth)
    attacker = path(proxied_auth, ATTACKER)
    outcomes = [attacker.attempt(WRONG) for _ in range(30)]
    assert outcomes == ["wrong"] * 10 + ["throttled"] * 20
    assert len(hashes) == 10  # the refused 20 never reached the hash
    # Even the right password is refused from the guessing address, before any hashing.
    assert attacker.attempt(ALICE[1]) == "throttled"
    assert path(proxied_auth, USER_ADDRESS).attempt(ALICE[1]) == "ok"


def test_each_throttled_login_is_counted_by_its_limit(proxied_auth):
    """tessera_login_throttled_total counts every 429, labelled by the limit that refused it
    (the throttle reports to the app's metrics, wired at construction in create_app)."""
    attacker = PasswordGrant(proxied_auth, ATTACKER)
    assert [attacker.attempt(WRONG) for _ in range(12)] == ["wrong"] * 10 + ["throttled"] * 2
    registry = proxied_auth.app.extensions["tessera"].metrics.registry
    counted = [
        sample
        for family in registry.collect()
        for sample in family.samples
        if sample.name == "tessera_login_throttled_total"
    ]
    assert sum(sample.value for sample in counted) == 2.0
    assert all(sample.labels["limit"] for sample in counted)


def test_the_paths_share_their_counters(proxied_auth):
    """Guesses cannot be multiplied by spreading them over the three paths."""
    for path in PATHS:
        for _ in range(3):
            assert path(proxied_auth, ATTACKER).attempt(WRONG) == "wrong"
    assert PasswordGrant(proxied_auth, ATTACKER).attempt(WRONG) == "wrong"  # the 10th
    for path in PATHS:
        assert path(proxied_auth, ATTACKER).attempt(WRONG) == "throttled"


def test_guessing_spread_over_many_addresses_is_bounded_per_username(serve, make_database_url):
    """Past the per-username limit, an address that already failed for the username is
    refused; an address with no failure gets in with the right password, and one wrong guess."""
    auth = start_auth_server(
        serve,
        make_database_url("auth"),
        trusted_proxies=1,
        login_failures_per_username="5 per hour",
    )
    bots = [f"192.0.2.{n}" for n in range(1, 6)]
    for bot in bots:
        assert PasswordGrant(auth, bot).attempt(WRONG) == "wrong"
    for bot in bots:
        assert PasswordGrant(auth, bot).attempt(WRONG) == "throttled"
    assert failed_logins(auth) == 5
    # A fresh address: one guess (the 6th failure), then throttled like the others.
    late_bot = PasswordGrant(auth, "192.0.2.99")
    assert late_bot.attempt(WRONG) == "wrong"
    assert late_bot.attempt(WRONG) == "throttled"
    assert failed_logins(auth) == 6
    # The real user, from an address that has not failed, is not locked out.
    assert PasswordGrant(auth, USER_ADDRESS).attempt(ALICE[1]) == "ok"
    assert LoginPage(auth, "198.51.100.8").attempt(ALICE[1]) == "ok"


def test_per_address_limit_counts_every_username(serve, make_database_url):
    auth = start_auth_server(
        serve, make_database_url("auth"), trusted_proxies=1, login_failures_per_ip="4 per hour"
    )
    for n in range(4):
        response = auth.http.post(
            f"{auth.url}/oauth/token",
            data={"grant_type": "password", "username": f"nobody{n}", "password": WRONG},
            auth=DEMO_APP,
            headers={"X-Forwarded-For": ATTACKER},
            timeout=10,
        )
        assert response.status_code == 400
    assert PasswordGrant(auth, ATTACKER).attempt(ALICE[1]) == "throttled"
    assert PasswordGrant(auth, USER_ADDRESS).attempt(ALICE[1]) == "ok"


def test_forwarded_for_is_taken_only_from_the_trusted_proxy_hop(proxied_auth):
    """With one trusted proxy only the address it appended counts: addresses the client puts
    in front of it do not make new (username, address) counters."""
    guesses = []
    for n in range(12):
        response = requests.post(
            f"{proxied_auth.url}/oauth/token",
            data={"grant_type": "password", "username": ALICE[0], "password": WRONG},
            auth=DEMO_APP,
            headers={"X-Forwarded-For": f"10.9.8.{n}, {ATTACKER}"},
            timeout=10,
        )
        guesses.append(response.status_code)
    assert guesses == [400] * 10 + [429] * 2
    assert PasswordGrant(proxied_auth, USER_ADDRESS).attempt(ALICE[1]) == "ok"


def test_forwarded_for_is_ignored_without_a_trusted_proxy(auth):
    """TRUSTED_PROXIES=0: X-Forwarded-For is the client's own claim; rotating it dodges
    nothing, every guess counts for the socket's address, and that address is the one the
    audit log records."""
    guesses = [PasswordGrant(auth, f"10.9.8.{n}").attempt(WRONG) for n in range(12)]
    assert guesses == ["wrong"] * 10 + ["throttled"] * 2
    with auth.app.app_context():
        logged = db.session.scalars(
            select(AuditEvent.ip).where(AuditEvent.event == "login_failed")
        ).all()
    assert len(logged) == 10 and set(logged) == {"127.0.0.1"}


def test_ipv6_addresses_count_per_64_network(proxied_auth):
    """One IPv6 subscriber holds a /64: rotating addresses inside it dodges nothing."""
    guesses = [
        PasswordGrant(proxied_auth, f"2001:db8:1:2::{n:x}").attempt(WRONG) for n in range(1, 13)
    ]
    assert guesses == ["wrong"] * 10 + ["throttled"] * 2
    assert PasswordGrant(proxied_auth, "2001:db8:1:3::1").attempt(ALICE[1]) == "ok"


def test_right_passwords_do_not_count(proxied_auth):
    """Checks are counted before the hash; a right password gives its count back, so a user
    (or a NAT full of users) logging in often is never throttled."""
    user = PasswordGrant(proxied_auth, USER_ADDRESS)
    for _ in range(9):
        assert user.attempt(WRONG) == "wrong"
    for _ in range(15):
        assert user.attempt(ALICE[1]) == "ok"
    assert user.attempt(WRONG) == "wrong"  # the 10th failure
    assert user.attempt(ALICE[1]) == "throttled"


def test_limits_reset_when_the_window_passes(serve, make_database_url):
    clock = FakeClock(start=1_800_000_000)  # on a 5-minute boundary
    auth = start_auth_server(serve, make_database_url("auth"), clock=clock, trusted_proxies=1)
    attacker = PasswordGrant(auth, ATTACKER)
    for _ in range(10):
        assert attacker.attempt(WRONG) == "wrong"
    clock.advance(100)
    response = attacker.http.post(
        f"{auth.url}/oauth/token",
        data={"grant_type": "password", "username": ALICE[0], "password": WRONG},
        auth=DEMO_APP,
        timeout=10,
    )
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "200"
    clock.advance(200)
    assert attacker.attempt(WRONG) == "wrong"


def test_tokens_purge_deletes_counters_of_past_windows(serve, make_database_url):
    clock = FakeClock()
    auth = start_auth_server(serve, make_database_url("auth"), clock=clock)
    PasswordGrant(auth, ATTACKER).attempt(WRONG)
    clock.advance(3600)  # the longest default window (per username)
    PasswordGrant(auth, ATTACKER).attempt(WRONG)
    assert counter_rows(auth) == 8
    result = auth.app.test_cli_runner().invoke(args=["tokens", "purge"])
    assert result.exit_code == 0, result.output
    assert "login_attempts=4" in result.output
    assert counter_rows(auth) == 4


def test_counter_storage_down_allows_logins(serve, make_database_url):
    """A counter store that cannot be reached must not lock every user out: the password
    still has to be right, and the failure is logged."""
    auth = start_auth_server(
        serve, make_database_url("auth"), ratelimit_storage_uri="redis://127.0.0.1:1/0"
    )
    assert auth.login()["access_token"]
    assert auth.token(grant_type="password", username="alice", password=WRONG).status_code == 400


# -- the bound on concurrent password hashing -------------------------------------------------


class BlockedHasher:
    """Stands in for the Argon2 hasher: verify() (run inside the hashing slot) waits until
    the test lets it go."""

    def __init__(self, passwords):
        self.inside = threading.Event()
        self.release = threading.Event()
        self._real = passwords._hasher
        passwords._hasher = self

    def verify(self, *args):
        self.inside.set()
        assert self.release.wait(10)
        return self._real.verify(*args)

    def __getattr__(self, name):
        return getattr(self._real, name)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.__name__)
def test_login_beyond_the_hashing_bound_is_refused_at_once(serve, make_database_url, path):
    """PASSWORD_HASH_CONCURRENCY=1 and a hash in progress: a second login gets 503 with
    Retry-After without waiting for it (temporarily_unavailable, no-store at the token
    endpoint), and its throttle count is given back."""
    auth = start_auth_server(
        serve, make_database_url("auth"), trusted_proxies=1, password_hash_concurrency=1
    )
    blocked = BlockedHasher(auth.app.extensions["tessera"].passwords)
    first_path, second_path = path(auth, USER_ADDRESS), path(auth, ATTACKER)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(first_path.attempt, ALICE[1])
        assert blocked.inside.wait(10)
        if path is PasswordGrant:
            response = second_path.http.post(
                f"{auth.url}/oauth/token",
                data={"grant_type": "password", "username": ALICE[0], "password": WRONG},
                auth=DEMO_APP,
                headers={"X-Request-ID": "busy-login-1"},
                timeout=10,
            )
            assert response.status_code == 503
            assert response.headers["X-Request-ID"] == "busy-login-1"
            assert response.json()["error"] == "temporarily_unavailable"
            assert response.headers["Cache-Control"] == "no-store"
            assert int(response.headers["Retry-After"]) >= 1
            # Only password checks wait for a slot: other grants are served meanwhile.
            assert auth.token(grant_type="client_credentials").status_code == 200
        else:
            assert second_path.attempt(WRONG) == "busy"
        assert not first.done()  # refused while the first hash was still running
        blocked.release.set()
        assert first.result(10) == "ok"
    assert failed_logins(auth) == 0
    assert counter_rows(auth) == 0  # both checks gave their units back
    # /metrics is served by the gunicorn master, not the app: read this app's own registry.
    busy = auth.app.extensions["tessera"].metrics.registry.get_sample_value(
        "tessera_password_hashing_busy_total"
    )
    assert busy == 1.0
