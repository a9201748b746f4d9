"""Signing keys: pre-publication, rotation (by the CLI, racing, automatic), every worker picking
up a rotation without a restart, tokens outliving the rotation of their key, encryption at rest,
and the three signing algorithms."""

from __future__ import annotations

import base64
import json
import threading
import time
from contextlib import contextmanager

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from auth_server import create_app
from auth_server import keys as keys_module
from auth_server.db import db
from auth_server.keys import generate_signing_key, prepare_signing_keys, rotate_signing_keys
from auth_server.models import AuditEvent, SigningKey
from shared.client.jwt_validation import InvalidToken, JWKSValidator
from shared.service.settings import ConfigurationError
from tests.support import NOTES, AuthServer, FakeClock, auth_settings, seed, start_auth_server

# The authorization server signs with EdDSA on purpose; auth_server/keys.py silences joserfc's
# deprecation warning process-wide, but pytest resets warning filters around every test.
pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")

ROTATION_FIELDS = ("active", "next", "retired")
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


# -- helpers -------------------------------------------------------------------------------


def start_with_clock(serve, database_url: str, clock, **overrides) -> AuthServer:
    server = serve()
    settings = auth_settings(database_url, server.url, **overrides)
    app = create_app(settings, create_tables=True, clock=clock)
    seed(app)
    server.mount(app)
    return AuthServer(url=server.url, app=app, settings=settings)


def add_worker(serve, auth: AuthServer, clock=time.time) -> AuthServer:
    """Another worker (process) on the same database: its own engine and key ring."""
    app = create_app(auth.settings, create_tables=False, clock=clock)
    server = serve(app)
    return AuthServer(url=server.url, app=app, settings=auth.settings)


@contextmanager
def unserved_app(settings, clock=time.time):
    """An app that is never served (CLI-like); its pool is closed on exit."""
    app = create_app(settings, create_tables=False, clock=clock)
    try:
        yield app
    finally:
        with app.app_context():
            db.engine.dispose()


def header_of(token: str) -> dict:
    segment = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def kid_of(token: str) -> str:
    return header_of(token)["kid"]


def client_token(auth: AuthServer) -> str:
    response = auth.token(grant_type="client_credentials")
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def stored_keys(app) -> list[dict]:
    with app.app_context():
        rows = db.session.scalars(select(SigningKey).order_by(SigningKey.created_at)).all()
        return [
            dict(
                kid=k.kid,
                alg=k.alg,
                state=k.state,
                private_key=k.private_key,
                encrypted=k.private_key_encrypted,
                retired_at=k.retired_at,
                remove_after=k.remove_after,
            )
            for k in rows
        ]


def kids_by_state(app) -> dict[str, list[str]]:
    states: dict[str, list[str]] = {"next": [], "active": [], "retired": []}
    for key in stored_keys(app):
        states[key["state"]].append(key["kid"])
    return states


def published(auth: AuthServer) -> dict[str, dict]:
    response = auth.http.get(f"{auth.url}/.well-known/jwks.json", timeout=5)
    assert response.status_code == 200
    return {key["kid"]: key for key in response.json()["keys"]}


def rotate(auth: AuthServer) -> dict[str, str]:
    result = auth.app.test_cli_runner().invoke(args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    fields = (line.partition(":") for line in result.output.splitlines())
    return {name: value.strip() for name, _, value in fields if name in ROTATION_FIELDS}


def rotation_audit_count(app) -> int:
    with app.app_context():
        return db.session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.event == "signing_key_rotated")
        )


def validator_for(auth: AuthServer, **options) -> JWKSValidator:
    jwks_uri = f"{auth.url}/.well-known/jwks.json"
    return JWKSValidator(auth.settings.auth_issuer, jwks_uri, NOTES, **options)


@pytest.fixture
def auth(serve, make_database_url):
    """A seeded authorization server re-reading its keys every 0.2 s (rotation tests stay fast)."""
    return start_auth_server(serve, make_database_url("auth"), key_cache_seconds=0.2)


# -- publication and rotation ----------------------------------------------------------------


def test_jwks_prepublishes_the_next_key_and_never_private_members(auth):
    """The JWKS holds the active and the next key, public members only; tokens use the active."""
    token = auth.login()["access_token"]
    states = kids_by_state(auth.app)
    assert len(states["active"]) == 1 and len(states["next"]) == 1 and states["retired"] == []
    keys = published(auth)
    assert set(keys) == {*states["active"], *states["next"]}
    assert kid_of(token) == states["active"][0]
    for key in keys.values():
        assert not PRIVATE_MEMBERS & set(key)
        assert key["use"] == "sig" and key["alg"] == auth.settings.signing_alg
    listing = auth.app.test_cli_runner().invoke(args=["keys", "list"]).output
    assert "PRIVATE KEY" not in listing and f"{states['next'][0]}\tES256\tnext" in listing


def test_cli_rotate_retires_the_active_key_promotes_next_and_publishes_a_new_next(auth):
    """`keys rotate`: active -> retired (still published), next -> active, a new next; audited."""
    auth.login()
    before = kids_by_state(auth.app)
    result = rotate(auth)
    after = kids_by_state(auth.app)
    assert result["retired"] == before["active"][0] and after["retired"] == before["active"]
    assert result["active"] == before["next"][0] and after["active"] == before["next"]
    assert after["next"] == [result["next"]] and result["next"] not in before["next"]
    retired = next(k for k in stored_keys(auth.app) if k["state"] == "retired")
    assert retired["remove_after"] - retired["retired_at"] == auth.settings.key_retirement_seconds
    # The JWKS is read from the database: it shows the rotation at once.
    assert set(published(auth)) == {result["retired"], result["active"], result["next"]}
    deadline = time.monotonic() + auth.settings.key_cache_seconds + 5
    while (kid := kid_of(client_token(auth))) != result["active"]:
        assert kid == result["retired"]
        assert time.monotonic() < deadline
        time.sleep(0.02)  # polling: the worker re-reads within KEY_CACHE_SECONDS
    assert rotation_audit_count(auth.app) == 1


def test_racing_rotations_leave_exactly_one_active_and_one_next_key(auth):
    """Of two interleaved rotations one returns None; free-running races never leave two
    active or two next keys, and the database refuses a second active key outright."""
    auth.login()
    components = auth.app.extensions["tessera"]
    alg, cipher = auth.settings.signing_alg, components.cipher
    retire_for = auth.settings.key_retirement_seconds
    with auth.app.app_context():
        factory = sessionmaker(bind=db.engine)
    now = int(time.time())

    # Deterministic interleaving: session 2 has read the keys; session 1 rotates and commits
    # just before session 2's first UPDATE.
    first, second = factory(), factory()
    outcome = {}

    def rotate_first_in_between(state):
        if state.is_update and "first" not in outcome:
            outcome["first"] = rotate_signing_keys(first, alg, cipher, now, retire_for)

    event.listen(second, "do_orm_execute", rotate_first_in_between)
    outcome["second"] = rotate_signing_keys(second, alg, cipher, now, retire_for)
    first.close()
    second.close()
    assert outcome["first"] is not None and outcome["second"] is None
    states = kids_by_state(auth.app)
    assert states["active"] == [outcome["first"].active_kid]
    assert states["next"] == [outcome["first"].next_kid]

    # Free-running: two threads, two sessions, released together, three times over.
    for _ in range(3):
        barrier = threading.Barrier(2)
        results = [None, None]

        def racer(i):
            with factory() as session:
                barrier.wait()
                results[i] = rotate_signing_keys(session, alg, cipher, now, retire_for)

        threads = [threading.Thread(target=racer, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        states = kids_by_state(auth.app)
        assert len(states["active"]) == 1 and len(states["next"]) == 1
        won = [r for r in results if r is not None]
        assert won, "both rotations lost"
        if len(won) == 2:  # they ran one after the other: the later one rotated the earlier's
            if won[0].retired_kid == won[1].active_kid:
                won.reverse()
            assert won[1].retired_kid == won[0].active_kid
        assert states["active"] == [won[-1].active_kid]
        assert states["next"] == [won[-1].next_kid]

    with factory() as session:
        session.add(generate_signing_key(alg, "active", cipher, now))
        with pytest.raises(IntegrityError):
            session.commit()


def test_every_worker_signs_with_the_new_key_within_key_cache_seconds(serve, make_database_url):
    """A rotation made elsewhere (the CLI) reaches every worker within KEY_CACHE_SECONDS,
    with no restart; until then a worker signs with the old key, never a third one."""
    auth = start_auth_server(serve, make_database_url("auth"), key_cache_seconds=0.5)
    workers = [auth, add_worker(serve, auth)]
    old_kid = kid_of(client_token(auth))
    assert {kid_of(client_token(w)) for w in workers} == {old_kid}
    new_kid = rotate(auth)["active"]
    rotated_at = time.monotonic()
    switched_after: dict[int, float] = {}
    while len(switched_after) < len(workers) and time.monotonic() - rotated_at < 3:
        for i, worker in enumerate(workers):
            if i in switched_after:
                continue
            kid = kid_of(client_token(worker))
            if kid == new_kid:
                switched_after[i] = time.monotonic() - rotated_at
            else:
                assert kid == old_kid
        time.sleep(0.02)
    print(f"workers switched to the new key after {sorted(switched_after.values())} s")
    assert len(switched_after) == len(workers)
    assert max(switched_after.values()) < auth.settings.key_cache_seconds + 0.5


def test_every_worker_publishes_a_key_as_soon_as_any_worker_signs_with_it(serve, make_database_url):
    """Regression (rotation flake): two rotations in a row activate a key created by the
    first. A worker whose key cache predates both (KEY_CACHE_SECONDS 60) used to serve its
    cached JWKS without that key while another worker already signed with it; the JWKS is read
    from the database, so every worker lists it at once. Its own signing keeps the cache."""
    auth = start_auth_server(serve, make_database_url("auth"), key_cache_seconds=60)
    old_kid = kid_of(client_token(auth))
    before = set(published(auth))
    rotate(auth)
    newest = rotate(auth)
    assert newest["active"] not in before
    other = add_worker(serve, auth)  # a worker (re)started since: it signs with the new key
    assert kid_of(client_token(other)) == newest["active"]
    assert kid_of(client_token(auth)) == old_kid  # cached for KEY_CACHE_SECONDS, by design
    assert {newest["active"], newest["next"]} <= set(published(auth))
    assert set(published(auth)) == set(published(other))


def test_a_token_outlives_the_rotation_of_its_key_until_it_expires(serve, make_database_url):
    """A token signed before a rotation stays valid by introspection and by JWKSValidator
    until its exp; its retired key leaves the JWKS key_retirement_seconds after the rotation."""
    clock = FakeClock()
    auth = start_with_clock(serve, make_database_url("auth"), clock, key_cache_seconds=5)
    ttl, cache = auth.settings.access_token_ttl, auth.settings.key_cache_seconds
    token = auth.login()["access_token"]
    old_kid = kid_of(token)
    issued = clock.now
    validator = validator_for(auth, clock=clock, leeway=0)
    assert validator.validate(token)

    rotated = clock.now + 10
    clock.now = rotated
    assert rotate(auth)["retired"] == old_kid
    clock.advance(cache)  # every worker has re-read its keys
    assert kid_of(auth.login()["access_token"]) != old_kid
    late_validator = validator_for(auth, clock=clock, leeway=0)  # first fetch after rotation
    for check_at in (rotated + cache, issued + ttl - 1):
        clock.now = check_at
        assert auth.is_active(token)
        assert validator.validate(token)["jti"]
        assert late_validator.validate(token)["jti"]
        assert old_kid in published(auth)

    clock.now = issued + ttl
    assert not auth.is_active(token)
    for v in (validator, late_validator):
        with pytest.raises(InvalidToken, match="expired"):
            v.validate(token)

    removal = rotated + auth.settings.key_retirement_seconds
    clock.now = removal - cache
    assert old_kid in published(auth)
    clock.now = removal
    keys = published(auth)
    assert old_kid not in keys and len(keys) == 2


def test_rotating_three_times_during_a_stream_of_requests_fails_none(serve, make_database_url):
    """Three rotations while threads get client_credentials tokens from two workers, introspect
    them and validate them locally: zero failed requests, and all four keys were used.

    Each rotation follows the first token signed with the previous key, so a key becomes
    active well within KEY_CACHE_SECONDS and min_refetch_interval of its publication. That no
    request fails does not depend on timing: the JWKS is read from the database, so a JWKS
    fetched after a token was signed lists its key, and the validator, when it fetched too
    recently, waits out the interval and fetches again (the two regression tests,
    test_every_worker_publishes_a_key_as_soon_as_any_worker_signs_with_it here and
    test_jwt_validation.py::test_a_key_activated_right_after_a_fetch_validates_after_waiting,
    pin each half without threads). The only time limit is a generous one for progress."""
    auth = start_auth_server(serve, make_database_url("auth"), key_cache_seconds=0.2)
    workers = [auth, add_worker(serve, auth)]
    validator = validator_for(auth, min_refetch_interval=0.2)
    counts = dict(tokens=0, introspections=0, validations=0)
    failures: list[str] = []
    kids_seen: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def client(n: int) -> None:
        i = n
        while not stop.is_set():
            i += 1
            issuer, introspector = workers[i % 2], workers[(i + 1) % 2]
            try:
                response = issuer.token(grant_type="client_credentials")
                if response.status_code != 200:
                    raise AssertionError(f"token {response.status_code} {response.text}")
                token = response.json()["access_token"]
                with lock:
                    counts["tokens"] += 1
                    kids_seen.add(kid_of(token))
                if not introspector.is_active(token):
                    raise AssertionError("introspection says inactive")
                with lock:
                    counts["introspections"] += 1
                validator.validate(token)
                with lock:
                    counts["validations"] += 1
            except Exception as exc:  # noqa: BLE001
                with lock:
                    failures.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()

    def wait_until_signed_with(kid: str) -> None:
        # A worker signs with it within KEY_CACHE_SECONDS (0.2 s); 30 s only bounds a hang.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with lock:
                if kid in kids_seen or failures:
                    return
            time.sleep(0.01)
        raise AssertionError(f"no token was signed with {kid} within 30 s")

    rotations = []
    try:
        wait_until_signed_with(kids_by_state(auth.app)["active"][0])
        for _ in range(3):
            rotations.append(rotate(auth))
            wait_until_signed_with(rotations[-1]["active"])  # it reached a worker
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    print(
        f"\nrotation under load: {len(rotations)} rotations, {counts['tokens']} tokens, "
        f"{counts['introspections']} introspections, {counts['validations']} local validations, "
        f"{len(failures)} failures, {len(kids_seen)} signing keys used, "
        f"{validator.fetch_count} JWKS fetches"
    )
    assert failures == []
    assert kids_seen == {rotations[0]["retired"]} | {r["active"] for r in rotations}
    assert counts["validations"] == counts["tokens"] > 0


# -- storage and algorithms ------------------------------------------------------------------


def test_private_keys_are_encrypted_at_rest_when_a_key_encryption_key_is_set(
    serve, make_database_url
):
    """With AUTH_KEY_ENCRYPTION_KEY the stored keys are Fernet tokens, not PEM; a wrong or
    missing key is a clear ConfigurationError; a key list `new,old` re-keys."""
    url = make_database_url("auth")
    kek = Fernet.generate_key().decode()
    auth = start_auth_server(serve, url, auth_key_encryption_key=kek)
    token = auth.login()["access_token"]
    rotate(auth)
    keys = stored_keys(auth.app)
    assert len(keys) == 3
    for key in keys:
        assert key["encrypted"] is True
        assert "BEGIN" not in key["private_key"] and "PRIVATE KEY" not in key["private_key"]
        assert Fernet(kek).decrypt(key["private_key"].encode()).startswith(b"-----BEGIN")
    assert "encrypted=True" in auth.app.test_cli_runner().invoke(args=["keys", "list"]).output
    assert validator_for(auth).validate(token)

    wrong = auth_settings(url, auth.url, auth_key_encryption_key=Fernet.generate_key().decode())
    missing = auth_settings(url, auth.url)
    for settings, message in (
        (wrong, "cannot decrypt the stored signing keys"),
        (missing, "encrypted but AUTH_KEY_ENCRYPTION_KEY is not set"),
    ):
        with unserved_app(settings) as app, pytest.raises(ConfigurationError, match=message):
            app.extensions["tessera"].keyring.signing_key()
    with pytest.raises(ConfigurationError, match="Fernet keys"):
        create_app(auth_settings(url, auth.url, auth_key_encryption_key="not-a-fernet-key"))

    new_kek = Fernet.generate_key().decode()
    rekeyed = auth_settings(url, auth.url, auth_key_encryption_key=f"{new_kek},{kek}")
    with unserved_app(rekeyed) as app:
        active = next(k for k in keys if k["state"] == "active")
        assert app.extensions["tessera"].keyring.signing_key()[0] == active["kid"]
        result = app.test_cli_runner().invoke(args=["keys", "rotate"])
        assert result.exit_code == 0, result.output
        fresh = next(k for k in stored_keys(app) if k["state"] == "next")
    assert Fernet(new_kek).decrypt(fresh["private_key"].encode()).startswith(b"-----BEGIN")


def test_private_keys_are_stored_unencrypted_without_a_key_encryption_key(auth):
    """With no AUTH_KEY_ENCRYPTION_KEY (nor key file) the private keys are stored as PEM."""
    auth.login()
    keys = stored_keys(auth.app)
    assert len(keys) == 2
    for key in keys:
        assert key["encrypted"] is False
        assert key["private_key"].startswith("-----BEGIN PRIVATE KEY-----")


@pytest.mark.parametrize(
    "alg,kty,crv", [("ES256", "EC", "P-256"), ("RS256", "RSA", None), ("EdDSA", "OKP", "Ed25519")]
)
def test_signing_alg_sets_the_token_alg_and_the_jwk_key_type(
    serve, make_database_url, alg, kty, crv
):
    """SIGNING_ALG ES256 / RS256 / EdDSA: the token header alg matches and its JWK has kty
    EC / RSA / OKP, and the token verifies against that JWK."""
    auth = start_auth_server(serve, make_database_url("auth"), signing_alg=alg)
    token = auth.login()["access_token"]
    header = header_of(token)
    assert header["alg"] == alg and header["typ"] == "at+jwt"
    key = published(auth)[header["kid"]]
    assert key["kty"] == kty and key["alg"] == alg and key.get("crv") == crv
    if kty == "RSA":
        assert len(base64.urlsafe_b64decode(key["n"] + "==")) * 8 >= 2048
    assert {k["alg"] for k in stored_keys(auth.app)} == {alg}
    assert validator_for(auth).validate(token)["sub"]


# -- automatic rotation ----------------------------------------------------------------------


def prepare(app) -> object:
    """What `keys prepare` and start-up run, on the app's own engine (its own connection)."""
    components = app.extensions["tessera"]
    settings = components.settings
    with app.app_context():
        engine = db.engine
    with Session(engine) as session:
        return prepare_signing_keys(
            session,
            settings.signing_alg,
            components.cipher,
            components.now(),
            settings.key_retirement_seconds,
            settings.signing_key_rotation_days,
        )


def test_automatic_rotation_happens_once_when_two_processes_prepare_after_the_period(
    serve, make_database_url
):
    """SIGNING_KEY_ROTATION_DAYS=1: `keys prepare` does nothing before a day; serving requests
    after it still signs with the due key (reads never rotate); two processes preparing at the
    same moment rotate exactly once, and both workers then sign with the new key."""
    clock = FakeClock()
    auth = start_with_clock(
        serve, make_database_url("auth"), clock, signing_key_rotation_days=1, key_cache_seconds=5
    )
    other = add_worker(serve, auth, clock)
    first = kid_of(client_token(auth))
    assert kid_of(client_token(other)) == first
    before = kids_by_state(auth.app)

    clock.advance(86400 - 10)
    assert prepare(auth.app) is None
    assert kid_of(client_token(auth)) == first and kids_by_state(auth.app) == before

    clock.advance(20)
    assert kid_of(client_token(auth)) == first and kids_by_state(auth.app) == before
    barrier = threading.Barrier(2)
    results: list[object] = [None, None]

    def prepare_at_once(i, app):
        barrier.wait()
        results[i] = prepare(app)

    threads = [
        threading.Thread(target=prepare_at_once, args=(i, w.app))
        for i, w in enumerate((auth, other))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    after = kids_by_state(auth.app)
    assert after["retired"] == before["active"] and after["active"] == before["next"]
    assert len(after["next"]) == 1 and after["next"] != before["next"]
    assert sum(result is not None for result in results) == 1
    clock.advance(5)  # KEY_CACHE_SECONDS: every worker re-reads
    assert {kid_of(client_token(w)) for w in (auth, other)} == set(after["active"])
    assert rotation_audit_count(auth.app) == 1


def test_a_process_with_a_stale_view_does_not_rotate_a_second_time(
    serve, make_database_url, monkeypatch
):
    """A process that found the key due, but whose rotation starts after another process's
    rotation committed, does nothing: the key activated a moment ago is not retired."""
    clock = FakeClock()
    auth = start_with_clock(
        serve, make_database_url("auth"), clock, signing_key_rotation_days=1, key_cache_seconds=5
    )
    other = add_worker(serve, auth, clock)
    before = kids_by_state(auth.app)
    clock.advance(86400 + 1)
    found_due = keys_module.rotation_due
    overtaken: list[object] = []

    def due_but_overtaken(active, now, rotation_days):
        due = found_due(active, now, rotation_days)
        if due and not overtaken:
            overtaken.append("running")
            overtaken[0] = prepare(other.app)  # the other process rotates and commits now
        return due

    monkeypatch.setattr(keys_module, "rotation_due", due_but_overtaken)
    assert prepare(auth.app) is None
    assert overtaken and overtaken[0] not in (None, "running")
    after = kids_by_state(auth.app)
    assert after["active"] == before["next"] and after["retired"] == before["active"]
    assert rotation_audit_count(auth.app) == 1
