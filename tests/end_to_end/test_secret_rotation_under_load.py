"""Rotating the resource server's introspection secret while it serves: zero 503s.

The operator runs `clients rotate-secret notes-api` (the old secret keeps working for the
overlap) and rewrites the file RESOURCE_CLIENT_SECRET_FILE names; the notes API follows the
file without a restart. Real servers over HTTP, threads hitting /api/me throughout.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from tests.support import NOTES_API, FakeClock, start_auth_server, start_resource_server

THREADS = 4
OVERLAP = 600


def write_atomically(path: Path, secret: str) -> None:
    """What a secret manager's agent does: a new file renamed over the old one."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(secret + "\n")
    os.replace(temporary, path)


def rotate(auth, *extra: str) -> str:
    result = auth.app.test_cli_runner().invoke(
        args=["clients", "rotate-secret", NOTES_API[0], *extra]
    )
    assert result.exit_code == 0, result.output
    return result.output.split("client_secret:")[1].split()[0]


class Load:
    """Threads calling GET /api/me with one access token until stopped; counts statuses."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.statuses: Counter[int] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(THREADS)]

    def _run(self) -> None:
        with requests.Session() as http:
            while not self._stop.is_set():
                response = http.get(
                    f"{self.url}/api/me",
                    headers={"Authorization": f"Bearer {self.token}"},
                    timeout=10,
                )
                with self._lock:
                    self.statuses[response.status_code] += 1

    def total(self) -> int:
        with self._lock:
            return sum(self.statuses.values())

    def wait_for(self, more: int, deadline: float = 30.0) -> None:
        """Poll until `more` further requests have been answered."""
        target = self.total() + more
        end = time.monotonic() + deadline
        while self.total() < target:
            assert time.monotonic() < end, f"load stalled at {self.statuses}"
            time.sleep(0.01)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def auth(serve, make_database_url, clock):
    # Each worker caches registrations for 5 s, as in production: the new secret must be
    # accepted before that cache expires.
    # Access tokens outlive the overlap the test moves the clock past.
    return start_auth_server(
        serve,
        make_database_url("auth"),
        clock=clock,
        client_cache_seconds=5,
        access_token_ttl=3600,
    )


@pytest.fixture
def secret_file(tmp_path) -> Path:
    path = tmp_path / "notes-api.secret"
    write_atomically(path, NOTES_API[1])
    return path


@pytest.fixture
def notes_api(serve, make_database_url, auth, secret_file):
    return start_resource_server(
        serve,
        make_database_url("notes"),
        auth,
        resource_client_secret=None,
        resource_client_secret_file=str(secret_file),
    )


def test_rotating_the_introspection_secret_under_load_costs_no_request(
    auth, notes_api, secret_file, clock
):
    token = auth.login()["access_token"]
    with Load(notes_api.url, token) as load:
        load.wait_for(20)
        new = rotate(auth, "--overlap", str(OVERLAP))
        load.wait_for(20)
        write_atomically(secret_file, new)
        load.wait_for(20)
        # The overlap ends: from now on only the new secret is accepted.
        clock.advance(OVERLAP)
        load.wait_for(40)
    assert set(load.statuses) == {200}, load.statuses
    # And the notes API really uses the new secret: the old one is refused now.
    assert auth.introspect(token, client=NOTES_API).status_code == 401


def test_a_rewrite_the_stat_cannot_see_is_picked_up_on_the_401(auth, notes_api, secret_file):
    """Same size, same inode, same modification time (a rewrite in place within the file
    system's timestamp granularity): the stat says nothing changed, the 401 says otherwise."""
    token = auth.login()["access_token"]
    write_atomically(secret_file, rotate(auth, "--overlap", "0"))
    assert notes_api.get("/api/me", token).status_code == 200
    before = os.stat(secret_file)
    new = rotate(auth, "--overlap", "0")
    with open(secret_file, "r+") as f:
        f.write(new + "\n")
    os.utime(secret_file, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(secret_file)
    assert (after.st_size, after.st_ino, after.st_mtime_ns) == (
        before.st_size,
        before.st_ino,
        before.st_mtime_ns,
    )
    response = notes_api.get("/api/me", token)
    assert response.status_code == 200, response.text


def test_a_wrong_secret_in_the_file_is_still_a_503(auth, notes_api, secret_file):
    token = auth.login()["access_token"]
    write_atomically(secret_file, "not-the-secret")
    response = notes_api.get("/api/me", token)
    assert response.status_code == 503
    assert "Retry-After" in response.headers
