"""Revocation is final (issue 12): every issuing operation against every revoking operation on
the same user, client or login, in every order and every overlap, on SQLite and PostgreSQL.

The operations run through the real app (Flask's test client, so Authlib, the grants and the
error handlers all take part; the CLI commands through Flask's CLI runner), each in its own
thread. The services report their steps ("read", "verified", "guarded", "written", "bumped",
"revoked") to `components.steps`; here that is a gate per thread which can hold an operation
at one step. A schedule is: run the first operation up to a step and hold it there, run the
second to its end or until it waits for a lock the first holds, then let the first go. When
the second is blocked is seen in pg_stat_activity on PostgreSQL (wait_event_type 'Lock'), and
by polling with a short deadline on SQLite, whose busy handler cannot be observed; either way
it only chooses which interleaving runs, never the verdict. The verdict is the invariant: once
the revoking call has returned, every token the issuing operation obtained is inactive per the
store's introspection lookup (a code it obtained starts no login), and nothing answered 5xx.
"""

from __future__ import annotations

import base64
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from auth_server import create_app
from auth_server.clients import register_client
from auth_server.db import db
from auth_server.store import find_token
from shared.protocol.digests import sha256_hex
from tests.databases import TEST_DATABASE_URL
from tests.support import (
    NOTES,
    auth_settings,
    csrf_token,
    form_action,
    pkce_pair,
    query_of,
)

pytestmark = pytest.mark.slow  # about 230 schedules per database

OLD_PASSWORD = "old-password-123"
NEW_PASSWORD = "new-password-456"
SPA_REDIRECT = "https://spa.example.com/cb"
# SQLite's busy handler cannot be observed: a second operation that has not finished within
# this long is taken as waiting for the first one's lock (shorter than the busy timeout).
SQLITE_BLOCK_WAIT = 0.3
OPERATION_DEADLINE = 30


# -- one world per schedule: a user and two clients nobody else touches ----------------------


@dataclass
class World:
    app: object
    n: int
    username: str = ""
    app_client: tuple[str, str] = ("", "")
    spa_client: str = ""
    # set up by the operations that need a login or a code first
    refresh_tokens: list[str] = field(default_factory=list)
    code: tuple[str, str] | None = None  # (code, verifier)

    def __post_init__(self):
        self.username = f"user{self.n}"
        self.app_client = (f"app{self.n}", f"app-secret-{self.n}")
        self.spa_client = f"spa{self.n}"
        components = self.app.extensions["tessera"]
        with self.app.app_context():
            components.accounts().create_user(self.username, OLD_PASSWORD)
            register_client(
                db.session,
                self.app_client[0],
                secret=self.app_client[1],
                grant_types=["password", "refresh_token", "client_credentials"],
                scopes=["notes:read"],
                audiences=[NOTES],
            )
            register_client(
                db.session,
                self.spa_client,
                client_type="public",
                grant_types=["authorization_code", "refresh_token"],
                scopes=["notes:read"],
                audiences=[NOTES],
                redirect_uris=[SPA_REDIRECT],
            )

    # HTTP through the test client: the request runs in the calling thread, under its gate.

    def client(self):
        return self.app.test_client()

    def token(self, http=None, client=None, **form):
        client = client or self.app_client
        basic = base64.b64encode(f"{client[0]}:{client[1]}".encode()).decode()
        return (http or self.client()).post(
            "/oauth/token", data=form, headers={"Authorization": f"Basic {basic}"}
        )

    def password_login(self, password=OLD_PASSWORD):
        return self.token(grant_type="password", username=self.username, password=password)

    def login_page(self):
        """(test client with the form's cookie, the form's URL, its CSRF token, verifier)."""
        verifier, challenge = pkce_pair()
        http = self.client()
        page = http.get(
            "/oauth/authorize",
            query_string=dict(
                response_type="code",
                client_id=self.spa_client,
                redirect_uri=SPA_REDIRECT,
                code_challenge=challenge,
                code_challenge_method="S256",
            ),
        )
        assert page.status_code == 200, page.text
        return http, form_action(page.text), csrf_token(page.text), verifier

    def exchange(self, code: str, verifier: str):
        return self.client().post(
            "/oauth/token",
            data=dict(
                grant_type="authorization_code",
                code=code,
                redirect_uri=SPA_REDIRECT,
                code_verifier=verifier,
                client_id=self.spa_client,
            ),
        )

    def cli(self, *args):
        return self.app.test_cli_runner().invoke(args=list(args))

    def is_active(self, token: str) -> bool:
        """The store's introspection lookup, as /oauth/introspect does it."""
        with self.app.app_context():
            record = find_token(db.session, sha256_hex(token), None)
            now = self.app.extensions["tessera"].now()
            return record is not None and record.is_active(now)


# -- the operations ------------------------------------------------------------------------


@dataclass
class Outcome:
    """What an operation answered, and the tokens or code it obtained."""

    status: int
    body: str = ""
    tokens: list[str] = field(default_factory=list)
    code: tuple[str, str] | None = None


def _tokens_of(response) -> Outcome:
    outcome = Outcome(response.status_code, response.get_data(as_text=True))
    if response.status_code == 200:
        body = response.get_json()
        outcome.tokens = [body[k] for k in ("access_token", "refresh_token") if k in body]
    return outcome


class Operation:
    name: str
    steps: tuple[str, ...]  # the steps it reports, in order, on its successful path

    def prepare(self, world: World) -> None:
        """Work done before the schedule starts (a login to refresh, a code to exchange)."""

    def run(self, world: World) -> Outcome:
        raise NotImplementedError


# Issuing operations


class PasswordGrant(Operation):
    name = "password_grant"
    steps = ("read", "verified", "guarded", "written")

    def run(self, world):
        return _tokens_of(world.password_login())


class LoginPageCode(Operation):
    name = "login_page_code"
    steps = ("read", "verified", "guarded", "written")

    def prepare(self, world):
        self.page = world.login_page()

    def run(self, world):
        http, action, csrf, verifier = self.page
        response = http.post(
            action, data=dict(csrf_token=csrf, username=world.username, password=OLD_PASSWORD)
        )
        outcome = Outcome(response.status_code, response.get_data(as_text=True))
        if response.status_code == 303:
            query = query_of(response.headers["Location"])
            if "code" in query:
                outcome.code = (query["code"], verifier)
        return outcome


class CodeExchange(Operation):
    name = "code_exchange"
    steps = ("read", "verified", "guarded", "written")

    def prepare(self, world):
        http, action, csrf, verifier = world.login_page()
        response = http.post(
            action, data=dict(csrf_token=csrf, username=world.username, password=OLD_PASSWORD)
        )
        assert response.status_code == 303, response.text
        self.code = (query_of(response.headers["Location"])["code"], verifier)

    def run(self, world):
        return _tokens_of(world.exchange(*self.code))


class Refresh(Operation):
    name = "refresh"
    steps = ("read", "verified", "guarded", "written")

    def prepare(self, world):
        login = world.password_login()
        assert login.status_code == 200, login.text
        first = login.get_json()["refresh_token"]
        # A consumed token of the same login, for the reuse-detection pair.
        rotated = world.token(grant_type="refresh_token", refresh_token=first)
        assert rotated.status_code == 200, rotated.text
        world.refresh_tokens = [first, rotated.get_json()["refresh_token"]]

    def run(self, world):
        return _tokens_of(
            world.token(grant_type="refresh_token", refresh_token=world.refresh_tokens[1])
        )


class ClientCredentials(Operation):
    name = "client_credentials"
    steps = ("guarded", "written")

    def run(self, world):
        return _tokens_of(world.token(grant_type="client_credentials"))


# Revoking operations


class ChangePassword(Operation):
    name = "password_change_endpoint"
    steps = ("read", "verified", "bumped", "revoked")

    def run(self, world):
        basic = base64.b64encode(":".join(world.app_client).encode()).decode()
        response = world.client().post(
            "/account/password",
            data=dict(
                username=world.username, current_password=OLD_PASSWORD, new_password=NEW_PASSWORD
            ),
            headers={"Authorization": f"Basic {basic}"},
        )
        return Outcome(response.status_code, response.get_data(as_text=True))


class _Cli(Operation):
    steps = ("bumped", "revoked")
    args: Callable[[World], list[str]]

    def run(self, world):
        result = world.cli(*self.args(world))
        return Outcome(
            200 if result.exit_code == 0 else 500, result.output + repr(result.exception)
        )


class SetPasswordCli(_Cli):
    name = "users_set_password"

    def args(self, world):
        return ["users", "set-password", world.username, "--password", NEW_PASSWORD]


class DisableUserCli(_Cli):
    name = "users_disable"

    def args(self, world):
        return ["users", "disable", world.username]


class RevokeTokensCli(_Cli):
    name = "users_revoke_tokens"

    def args(self, world):
        return ["users", "revoke-tokens", world.username]


class DisableClientCli(_Cli):
    name = "clients_disable"

    def __init__(self, which: str):
        self.which = which

    def args(self, world):
        client_id = world.spa_client if self.which == "spa" else world.app_client[0]
        return ["clients", "disable", client_id]


class Logout(Operation):
    """RFC 7009 revocation of the login's current refresh token."""

    name = "logout"
    steps = ("read", "revoked")

    def run(self, world):
        basic = base64.b64encode(":".join(world.app_client).encode()).decode()
        response = world.client().post(
            "/oauth/revoke",
            data=dict(token=world.refresh_tokens[1], token_type_hint="refresh_token"),
            headers={"Authorization": f"Basic {basic}"},
        )
        return Outcome(response.status_code, response.get_data(as_text=True))


class ReuseDetection(Operation):
    """A refresh with the login's already consumed refresh token: the family is revoked."""

    name = "refresh_reuse_detection"
    steps = ("read", "revoked")

    def run(self, world):
        response = world.token(grant_type="refresh_token", refresh_token=world.refresh_tokens[0])
        outcome = Outcome(response.status_code, response.get_data(as_text=True))
        # Reuse detected is the revocation succeeding: invalid_grant after revoking the family.
        if response.status_code == 400 and response.get_json()["error"] == "invalid_grant":
            outcome.status = 200
        return outcome


USER_ISSUERS = [PasswordGrant, LoginPageCode, CodeExchange, Refresh]
USER_REVOKERS = [ChangePassword, SetPasswordCli, DisableUserCli, RevokeTokensCli]
PAIRS = [
    *((issuer, revoker) for issuer in USER_ISSUERS for revoker in USER_REVOKERS),
    (PasswordGrant, lambda: DisableClientCli("app")),
    (LoginPageCode, lambda: DisableClientCli("spa")),
    (CodeExchange, lambda: DisableClientCli("spa")),
    (Refresh, lambda: DisableClientCli("app")),
    (ClientCredentials, lambda: DisableClientCli("app")),
    (Refresh, Logout),
    (Refresh, ReuseDetection),
]


def _pair_id(pair) -> str:
    issuer, revoker = pair
    return f"{issuer.name}-x-{revoker().name}"


# -- driving threads through their steps ---------------------------------------------------


class Gate:
    """The steps hook of one operation's thread: holds it at `pause_at` until released."""

    def __init__(self, pause_at: str | None):
        self.pause_at = pause_at
        self.seen: list[str] = []
        self.reached = threading.Event()
        self.release = threading.Event()

    def __call__(self, step: str) -> None:
        self.seen.append(step)
        if step == self.pause_at and not self.reached.is_set():
            self.reached.set()
            if not self.release.wait(OPERATION_DEADLINE):
                raise RuntimeError(f"held at {step} and never released")


class Gates:
    """components.steps for the app under test: each thread reports to its own gate."""

    def __init__(self):
        self._by_thread: dict[int, Gate] = {}
        # Every step and every end, in the order they happened: (gate, step or "done").
        self.history: list[tuple[Gate, str]] = []
        self._history_lock = threading.Lock()

    def __call__(self, step: str) -> None:
        gate = self._by_thread.get(threading.get_ident())
        if gate is None:
            return
        self.note(gate, step)
        gate(step)

    def note(self, gate: Gate, event: str) -> None:
        with self._history_lock:
            self.history.append((gate, event))

    def happened_after(self, later: tuple[Gate, str], earlier: tuple[Gate, str]) -> bool:
        """True if `later` was seen and `earlier` was seen before it."""
        events = list(self.history)
        if later not in events or earlier not in events:
            return False
        return events.index(earlier) < events.index(later)

    def attach(self, gate: Gate) -> None:
        self._by_thread[threading.get_ident()] = gate


class Running:
    def __init__(self, gates: Gates, op: Operation, world: World, pause_at: str | None = None):
        self.gate = Gate(pause_at)
        self.done = threading.Event()
        self.outcome: Outcome | None = None
        self.error: BaseException | None = None

        def body():
            gates.attach(self.gate)
            try:
                self.outcome = op.run(world)
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                self.error = exc
            finally:
                gates.note(self.gate, "done")
                self.done.set()
                self.gate.release.set()

        self.thread = threading.Thread(target=body, daemon=True)
        self.thread.start()

    def held_or_done(self) -> None:
        deadline = time.monotonic() + OPERATION_DEADLINE
        while not (self.gate.reached.is_set() or self.done.is_set()):
            assert time.monotonic() < deadline, "operation neither reached its step nor ended"
            self.done.wait(0.005)

    def finish(self) -> Outcome:
        self.gate.release.set()
        self.thread.join(OPERATION_DEADLINE)
        assert not self.thread.is_alive(), "operation did not finish"
        if self.error is not None:
            raise self.error
        return self.outcome


class LockWatch:
    """Is a connection of this app waiting for a lock? Exact on PostgreSQL (pg_stat_activity,
    by the application_name the app's URL sets); a short deadline on SQLite."""

    def __init__(self, backend: str, application_name: str | None):
        self.backend = backend
        self.application_name = application_name
        self.engine = create_engine(TEST_DATABASE_URL, pool_size=1) if application_name else None

    def waits_or_ends(self, running: Running) -> None:
        deadline = time.monotonic() + (
            SQLITE_BLOCK_WAIT if self.backend == "sqlite" else OPERATION_DEADLINE
        )
        while time.monotonic() < deadline:
            if running.done.wait(0.005):
                return
            if self.engine is not None and self._lock_waiters():
                return
        assert self.backend == "sqlite", "operation neither ended nor waited for a lock"

    def _lock_waiters(self) -> int:
        with self.engine.connect() as conn:
            return conn.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE application_name = :name AND wait_event_type = 'Lock'"
                ),
                {"name": self.application_name},
            )

    def close(self):
        if self.engine is not None:
            self.engine.dispose()


# -- the schedules and the invariant -------------------------------------------------------


def schedules(issuer: Operation, revoker: Operation):
    """(first, step to hold it at or None for 'to the end', second) for each order and overlap."""
    yield issuer, None, revoker
    yield revoker, None, issuer
    for step in issuer.steps:
        yield issuer, step, revoker
    for step in revoker.steps:
        yield revoker, step, issuer


def check_invariant(world, issuer, revoker, issued: Outcome, revoked: Outcome, issuer_last):
    context = f"{issuer.name} x {revoker.name}: issued {issued}, revoked {revoked}"
    assert issued.status < 500 and revoked.status < 500, context
    assert revoked.status == 200, context
    # A login started after the revocation returned is a new login: only revoke-tokens (which
    # leaves the password and the account as they were) lets it succeed, and it may.
    fresh_login = issuer_last and isinstance(revoker, RevokeTokensCli)
    if fresh_login and isinstance(issuer, PasswordGrant | LoginPageCode):
        return
    for token in issued.tokens:
        assert not world.is_active(token), f"token survived the revocation: {context}"
    if issued.code is not None:
        exchanged = world.exchange(*issued.code)
        # invalid_grant, or invalid_client once the client itself is disabled
        assert exchanged.status_code in (400, 401), f"code survived the revocation: {context}"


@pytest.fixture
def app(make_database_url, database_backend, request):
    url = make_database_url("auth")
    application_name = None
    if database_backend == "postgresql":
        application_name = f"tessera-interleave-{id(request)}"
        url = (
            make_url(url)
            .update_query_dict({"application_name": application_name})
            .render_as_string(hide_password=False)
        )
    settings = auth_settings(url, "http://127.0.0.1:9", login_failures_per_ip="10000 per minute")
    application = create_app(settings, create_tables=True)
    with application.app_context():
        # The signing key exists before any schedule: bootstrapping it writes on its own.
        application.extensions["tessera"].keyring.signing_key()
    gates = Gates()
    application.extensions["tessera"].steps = gates
    watch = LockWatch(database_backend, application_name)
    yield application, gates, watch
    watch.close()
    with application.app_context():
        db.engine.dispose()


_worlds = itertools.count()


@pytest.mark.parametrize("pair", PAIRS, ids=_pair_id)
def test_no_token_of_an_overlapping_issuance_survives_the_revocation(app, pair):
    application, gates, watch = app
    issuer_class, revoker_class = pair
    ran = 0
    for first_class_is_issuer, pause_at, index in _schedule_plan(issuer_class, revoker_class):
        issuer, revoker = issuer_class(), revoker_class()
        world = World(application, next(_worlds))
        issuer.prepare(world)
        revoker.prepare(world)
        first, second = (issuer, revoker) if first_class_is_issuer else (revoker, issuer)
        if pause_at is None:
            one = Running(gates, first, world)
            first_outcome = one.finish()
            two = Running(gates, second, world)
            second_outcome = two.finish()
        else:
            one = Running(gates, first, world, pause_at)
            one.held_or_done()
            # Run first, each operation reaches every step of its path: the hooks are wired.
            assert one.gate.reached.is_set(), f"{first.name} never reported {pause_at}"
            two = Running(gates, second, world)
            watch.waits_or_ends(two)
            first_outcome = one.finish()
            second_outcome = two.finish()
        issued, revoked = (
            (first_outcome, second_outcome) if first is issuer else (second_outcome, first_outcome)
        )
        issuer_run, revoker_run = (one, two) if first is issuer else (two, one)
        # A login that read the user only after the revocation had returned is a new login,
        # whatever order the threads were started in (e.g. it waited for the database's write
        # lock, held by the paused revocation, before its first read).
        issuer_last = gates.happened_after(
            (issuer_run.gate, "read"), (revoker_run.gate, "done")
        ) or (pause_at is None and first is revoker)
        check_invariant(world, issuer, revoker, issued, revoked, issuer_last)
        ran += 1
    assert ran >= 4


def _schedule_plan(issuer_class, revoker_class):
    issuer, revoker = issuer_class(), revoker_class()
    for index, (first, pause_at, _second) in enumerate(schedules(issuer, revoker)):
        yield first is issuer, pause_at, index
