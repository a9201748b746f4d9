"""Issue 12 from outside, as it was reported: a gunicorn authorization server with several
workers, threads logging in with the password grant and refreshing as fast as they can while a
revocation of that user or client runs. Once the revocation has returned and the requests in
flight have finished, no token they obtained with the old credentials is active.

After a password change, a disable or a client disable no request can legitimately obtain a
token, so every token obtained counts. After `users revoke-tokens` the password still works,
and a login the server handled after the revocation is a new, valid login; which one came first
is then read from the audit trail: the revocation's event is written after the epoch increment,
which waits for every issuance holding the user's epoch to commit, so an issuance that precedes
it has a smaller audit id (on PostgreSQL too, where ids are not in commit order: see epochs.py).
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
import requests
from sqlalchemy import select

from auth_server import create_app
from auth_server.clients import register_client
from auth_server.db import db
from auth_server.models import AuditEvent, User
from tests.support import NOTES, NOTES_API

pytestmark = pytest.mark.slow

THREADS = 8
ROUNDS = 2  # per revoking operation
OLD_PASSWORD = "old-password-123"
# Tokens obtained before the revocation is started: it must race logins already under way.
WARM_UP_TOKENS = 6


@dataclass
class Round:
    auth_url: str
    username: str
    client: tuple[str, str]
    revocation_returned: threading.Event = field(default_factory=threading.Event)
    warm: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # (access token, refresh token or None) of every successful request
    obtained: list[tuple[str, str | None]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    def post(self, http, **form):
        return http.post(f"{self.auth_url}/oauth/token", data=form, auth=self.client, timeout=30)

    def worker(self, _):
        refresh_token = None
        with requests.Session() as http:
            while not self.revocation_returned.is_set():
                if refresh_token is None:
                    response = self.post(
                        http, grant_type="password", username=self.username, password=OLD_PASSWORD
                    )
                else:
                    response = self.post(
                        http, grant_type="refresh_token", refresh_token=refresh_token
                    )
                body = response.json()
                with self.lock:
                    self.statuses.append(response.status_code)
                    if response.status_code == 200:
                        self.obtained.append((body["access_token"], body.get("refresh_token")))
                    if len(self.obtained) >= WARM_UP_TOKENS:
                        self.warm.set()
                # alternate: a login, then a refresh of it, then a new login
                refresh_token = body.get("refresh_token") if refresh_token is None else None


_names = itertools.count()


def _fresh_user_and_client(admin_app) -> tuple[str, tuple[str, str]]:
    n = next(_names)
    username, client = f"racer{n}", (f"racer-app{n}", f"racer-secret-{n}")
    with admin_app.app_context():
        admin_app.extensions["tessera"].accounts().create_user(username, OLD_PASSWORD)
        register_client(
            db.session,
            client[0],
            secret=client[1],
            grant_types=["password", "refresh_token"],
            scopes=["notes:read"],
            audiences=[NOTES],
        )
    return username, client


def _password_change(auth_url, admin_app, username, client):
    response = requests.post(
        f"{auth_url}/account/password",
        auth=client,
        data=dict(username=username, current_password=OLD_PASSWORD, new_password="new-pass-456"),
        timeout=30,
    )
    assert response.status_code == 200, response.text


def _cli(*args):
    def revoke(_auth_url, admin_app, username, client):
        argv = [a.format(username=username, client_id=client[0]) for a in args]
        result = admin_app.test_cli_runner().invoke(args=argv)
        assert result.exit_code == 0, result.output

    return revoke


# name -> (revoke, the audit event it writes if a later login may legitimately succeed)
REVOCATIONS = {
    "password_change_endpoint": (_password_change, None),
    "users_set_password": (
        _cli("users", "set-password", "{username}", "--password", "new-pw-789"),
        None,
    ),
    "users_disable": (_cli("users", "disable", "{username}"), None),
    "users_revoke_tokens": (_cli("users", "revoke-tokens", "{username}"), "user_tokens_revoked"),
    "clients_disable": (_cli("clients", "disable", "{client_id}"), None),
}


def test_no_token_survives_a_revocation_raced_by_logins_and_refreshes(gunicorn_auth):
    auth = gunicorn_auth(
        workers=3,
        login_failures_per_username="10000 per minute",
        login_failures_per_ip="10000 per minute",
    )
    # The operator's process: the CLI and the seeding act on the same database.
    admin_app = create_app(auth.settings)
    survivors: dict[str, int] = {}
    checked = 0
    for name, (revoke, later_login_valid_after) in REVOCATIONS.items():
        for _ in range(ROUNDS):
            username, client = _fresh_user_and_client(admin_app)
            race = Round(auth.url, username, client)
            with ThreadPoolExecutor(THREADS) as pool:
                workers = [pool.submit(race.worker, i) for i in range(THREADS)]
                assert race.warm.wait(30), "no logins succeeded before the revocation"
                try:
                    revoke(auth.url, admin_app, username, client)
                finally:
                    race.revocation_returned.set()
                for worker in workers:
                    worker.result()
            assert all(status < 500 for status in race.statuses), race.statuses
            obtained = race.obtained
            if later_login_valid_after:
                obtained = _issued_before(admin_app, obtained, later_login_valid_after, username)
            tokens = [t for pair in obtained for t in pair if t is not None]
            alive = [t for t in tokens if _active(auth.url, t)]
            survivors[name] = survivors.get(name, 0) + len(alive)
            checked += len(tokens)
    print(f"{checked} tokens checked after their revocation; survivors: {survivors}")
    assert survivors == dict.fromkeys(REVOCATIONS, 0)


def _jti(access_token: str) -> str:
    payload = access_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"]


def _issued_before(admin_app, obtained, revocation_event: str, username: str):
    """The (access, refresh) pairs whose issuance's audit event precedes the revocation's."""
    with admin_app.app_context():
        user_id = db.session.scalar(select(User.id).where(User.username == username))
        rows = db.session.execute(
            select(AuditEvent.id, AuditEvent.event, AuditEvent.detail).where(
                AuditEvent.user_id == user_id
            )
        )
        revoked_at_id = None
        issued_ids = {}
        for row in rows:
            detail = json.loads(row.detail)
            if row.event == revocation_event:
                revoked_at_id = row.id  # one revocation per fresh user
            elif "jti" in detail:
                issued_ids[detail["jti"]] = row.id
    assert revoked_at_id is not None
    return [pair for pair in obtained if issued_ids[_jti(pair[0])] < revoked_at_id]


def _active(auth_url: str, token: str) -> bool:
    response = requests.post(
        f"{auth_url}/oauth/introspect", data={"token": token}, auth=NOTES_API, timeout=30
    )
    assert response.status_code == 200, response.text
    return response.json()["active"]
