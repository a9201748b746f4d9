"""shared.client.jwt_validation: local validation of our RFC 9068 access tokens against a real
authorization server's JWKS, and the forgeries it must reject."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time

import pytest
from flask import Flask
from joserfc import jwk, jwt

from shared.client.jwt_validation import InvalidToken, JWKSUnavailable, JWKSValidator
from tests.resource_server.fake_as import TricklingAuthorizationServer
from tests.support import DEMO_APP, NOTES, REPORTS, FakeClock, start_auth_server

# The authorization server signs with EdDSA on purpose; auth_server/keys.py silences joserfc's
# deprecation warning process-wide, but pytest resets warning filters around every test.
pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")

JWKS_PATH = "/.well-known/jwks.json"


class CountingMiddleware:
    """Wraps an app's wsgi_app: counts JWKS requests, and can make the JWKS answer 503."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app
        self.jwks_requests = 0
        self.jwks_down = False
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == JWKS_PATH:
            with self._lock:
                self.jwks_requests += 1
            if self.jwks_down:
                start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
                return [b"down"]
        return self.wsgi_app(environ, start_response)


@pytest.fixture
def auth(serve, make_database_url):
    """A seeded authorization server whose JWKS requests are counted."""
    server = start_auth_server(serve, make_database_url("auth"))
    server.jwks_counter = CountingMiddleware(server.app.wsgi_app)
    server.app.wsgi_app = server.jwks_counter
    return server


def validator_for(auth, audience=NOTES, **options) -> JWKSValidator:
    return JWKSValidator(auth.settings.auth_issuer, auth.url + JWKS_PATH, audience, **options)


def b64(data: bytes | dict) -> str:
    if isinstance(data, dict):
        data = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segments(token: str) -> tuple[dict, dict]:
    header, payload, _ = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return (
        json.loads(base64.urlsafe_b64decode(pad(header))),
        json.loads(base64.urlsafe_b64decode(pad(payload))),
    )


def sign(key, alg: str, header: dict, claims: dict) -> str:
    return jwt.encode({"alg": alg, **header}, claims, key, algorithms=[alg], default_type=None)


def hs256(secret: bytes, header: dict, claims: dict) -> str:
    signing_input = f"{b64(header)}.{b64(claims)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def active_key(auth):
    """(kid, alg, private key) the authorization server signs with right now."""
    return auth.app.extensions["tessera"].keyring.signing_key()


def public_jwks(auth) -> list[dict]:
    return auth.http.get(auth.url + JWKS_PATH, timeout=5).json()["keys"]


def test_a_token_from_the_authorization_server_validates(auth):
    """A real login token validates locally and yields its RFC 9068 claims."""
    token = auth.login()["access_token"]
    with validator_for(auth) as validator:
        claims = validator.validate(token)
    assert claims["iss"] == auth.settings.auth_issuer
    assert claims["aud"] == NOTES
    assert claims["client_id"] == DEMO_APP[0]
    assert {"sub", "jti", "iat", "exp", "scope"} <= set(claims)


@pytest.mark.parametrize("alg,kty", [("ES256", "EC"), ("RS256", "RSA"), ("EdDSA", "OKP")])
def test_every_signing_algorithm_validates(serve, make_database_url, alg, kty):
    """ES256, RS256 and EdDSA tokens all validate, and their JWK carries the matching kty."""
    auth = start_auth_server(serve, make_database_url("auth"), signing_alg=alg)
    token = auth.login()["access_token"]
    header, _ = segments(token)
    assert header["alg"] == alg and header["typ"] == "at+jwt"
    jwk_entry = next(k for k in public_jwks(auth) if k["kid"] == header["kid"])
    assert jwk_entry["kty"] == kty and jwk_entry["alg"] == alg
    with validator_for(auth) as validator:
        assert validator.validate(token)["iss"] == auth.settings.auth_issuer


def test_forged_and_malformed_tokens_are_rejected(auth):
    """alg none, HS256 keyed with the public key, tampering, foreign keys, wrong typ/iss/aud,
    expiry, missing kid or claims: each one raises InvalidToken with a quote-free message."""
    real = auth.login()["access_token"]
    header, claims = segments(real)
    kid, alg, private = active_key(auth)
    assert header["kid"] == kid
    public = next(k for k in public_jwks(auth) if k["kid"] == kid)
    public_pem = jwk.import_key(public).as_pem(private=False)
    now = int(time.time())
    foreign = jwk.generate_key("EC", "P-256", private=True)
    ed_key = jwk.generate_key("OKP", "Ed25519", private=True)

    def ours(header_changes=None, drop_header=(), drop_claims=(), **claim_changes):
        h = {"typ": "at+jwt", "kid": kid, **(header_changes or {})}
        c = {**claims, **claim_changes}
        for name in drop_header:
            h.pop(name)
        for name in drop_claims:
            c.pop(name)
        return sign(private, alg, h, c)

    h64, p64, s64 = real.split(".")
    hs256_header = {**header, "alg": "HS256"}
    unsupported, mismatch, bad_signature = "unsupported signing algorithm", "match", "signature"
    not_at, wrong_iss, wrong_aud = "typ must be at", "another issuer", "not meant for"
    # name -> (the reason the description must give, the forged token)
    forgeries = {
        "alg none, unsigned": (unsupported, f"{b64({**header, 'alg': 'none'})}.{p64}."),
        "alg none, signature kept": (unsupported, f"{b64({**header, 'alg': 'none'})}.{p64}.{s64}"),
        "HS256 keyed with the PEM": (unsupported, hs256(public_pem, hs256_header, claims)),
        "HS256 keyed with the JWK JSON": (
            unsupported,
            hs256(json.dumps(public).encode(), hs256_header, claims),
        ),
        "HS256 keyed with the compact JWK JSON": (
            unsupported,
            hs256(
                json.dumps(public, separators=(",", ":"), sort_keys=True).encode(),
                hs256_header,
                claims,
            ),
        ),
        "tampered payload": (
            bad_signature,
            f"{h64}.{b64({**claims, 'scope': claims['scope'] + ' admin'})}.{s64}",
        ),
        "tampered header": (bad_signature, f"{b64({**header, 'x': 1})}.{p64}.{s64}"),
        "signature stripped": (bad_signature, f"{h64}.{p64}."),
        "unknown key, unknown kid": (
            "unknown key",
            sign(foreign, "ES256", {"typ": "at+jwt", "kid": "nope"}, claims),
        ),
        "foreign key reusing a real kid": (
            bad_signature,
            sign(foreign, "ES256", {"typ": "at+jwt", "kid": kid}, claims),
        ),
        "header alg other than the JWK alg": (
            mismatch,
            sign(ed_key, "EdDSA", {"typ": "at+jwt", "kid": kid}, claims),
        ),
        "typ JWT": (not_at, ours({"typ": "JWT"})),
        "typ missing": (not_at, ours(drop_header=("typ",))),
        "typ of an ID token": (not_at, ours({"typ": "id_token+jwt"})),
        "kid missing": ("no key id", ours(drop_header=("kid",))),
        "crit header": ("critical", ours({"crit": ["kid"]})),
        "wrong iss": (wrong_iss, ours(iss="https://evil.example")),
        "iss with a trailing slash": (wrong_iss, ours(iss=auth.settings.auth_issuer + "/")),
        "iss missing": (wrong_iss, ours(drop_claims=("iss",))),
        "wrong aud": (wrong_aud, ours(aud=REPORTS)),
        "wrong aud list": (wrong_aud, ours(aud=[REPORTS, "urn:other"])),
        "aud missing": (wrong_aud, ours(drop_claims=("aud",))),
        "expired": ("expired", ours(iat=now - 400, exp=now - 100)),
        "issued in the future": ("in the future", ours(iat=now + 120, exp=now + 400)),
        "not valid yet": ("not valid yet", ours(nbf=now + 120)),
        "exp missing": ("expiry", ours(drop_claims=("exp",))),
        "exp not a number": ("expiry", ours(exp=str(now + 100))),
        "exp infinite": ("expiry", ours(exp=float("inf"))),
        "iat missing": ("issue time", ours(drop_claims=("iat",))),
        "sub missing": ("no sub", ours(drop_claims=("sub",))),
        "client_id missing": ("no client_id", ours(drop_claims=("client_id",))),
        "jti missing": ("no jti", ours(drop_claims=("jti",))),
        "two parts": ("not a signed JWT", f"{h64}.{p64}"),
        "four parts": ("not a signed JWT", f"{real}.x"),
        "header not JSON": ("header is malformed", f"{b64(b'not json')}.{p64}.{s64}"),
        "header with a stray character": (
            "header is malformed",
            f"{h64[:4]}!{h64[4:]}.{p64}.{s64}",
        ),
        "header a JSON array": ("header is malformed", f"{b64(b'[1]')}.{p64}.{s64}"),
        "empty": ("not a signed JWT", ""),
    }
    # min_refetch_interval: the unknown kid waits it out before its re-fetch.
    with validator_for(auth, min_refetch_interval=0.05) as validator:
        assert validator.validate(real)  # the keys are fine: every failure below is the forgery's
        wrong = {}
        for name, (reason, forged) in forgeries.items():
            try:
                validator.validate(forged)
                wrong[name] = "accepted"
            except InvalidToken as exc:
                description = str(exc)
                if reason not in description or '"' in description or "\\" in description:
                    wrong[name] = description
        assert wrong == {}
        # The same key with the other spellings RFC 9068 §4 allows is accepted.
        for typ in ("application/at+jwt", "AT+JWT"):
            assert validator.validate(ours({"typ": typ}))["jti"] == claims["jti"]
        assert validator.validate(ours(aud=[REPORTS, NOTES]))


def test_real_tokens_fail_for_another_issuer_audience_or_after_expiry(auth):
    """A genuine token is rejected by a validator for another issuer or audience, and once
    exp plus the leeway has passed."""
    token = auth.login()["access_token"]
    _, claims = segments(token)
    with pytest.raises(InvalidToken, match="another issuer"):
        JWKSValidator("https://other.example", auth.url + JWKS_PATH, NOTES).validate(token)
    with pytest.raises(InvalidToken, match="not meant for this resource"):
        validator_for(auth, audience=REPORTS).validate(token)
    exp = claims["exp"]
    assert validator_for(auth, leeway=30, clock=lambda: exp + 29).validate(token)
    with pytest.raises(InvalidToken, match="expired"):
        validator_for(auth, leeway=30, clock=lambda: exp + 30).validate(token)


class GatedSleep:
    """A validator's `sleep` that records each wait and holds the caller until `release`
    (which first moves the fake clock): tests see who waited, for how long, and all at once."""

    def __init__(self, clock: FakeClock, blocking: bool = True):
        self.clock = clock
        self.blocking = blocking
        self.waits: list[float] = []
        self._gate = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, seconds: float) -> None:
        with self._lock:
            self.waits.append(seconds)
        if self.blocking:
            assert self._gate.wait(timeout=30), "never released"

    def wait_for_sleepers(self, count: int, threads: list[threading.Thread]) -> None:
        deadline = time.monotonic() + 30
        while len(self.waits) < count and any(thread.is_alive() for thread in threads):
            assert time.monotonic() < deadline, f"{len(self.waits)} of {count} waiting"
            time.sleep(0.005)
        assert len(self.waits) == count, "a validation ended without waiting"

    def release(self, advance: float) -> None:
        self.clock.advance(advance)
        self._gate.set()


def run_threads(target, args_list) -> None:
    threads = [threading.Thread(target=target, args=args) for args in args_list]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_unknown_kids_refetch_the_jwks_at_most_once_per_interval(auth):
    """Garbage kids (even from many threads at once) cause one JWKS re-fetch per
    min_refetch_interval, and never one per token: within the interval a validation waits out
    its rest (at most the interval) and the waiters share one fetch."""
    clock = FakeClock()
    # The clock does not move while they "wait": each waiter finds the interval not over and
    # fetches nothing (the gated test below lets the interval end).
    sleep = GatedSleep(clock, blocking=False)
    validator = validator_for(
        auth, min_refetch_interval=10, max_unknown_kid_wait=10, clock=clock, sleep=sleep
    )
    validator.validate(auth.login()["access_token"])
    assert auth.jwks_counter.jwks_requests == 1
    clock.advance(10)  # the interval counts from the last fetch, whatever caused it
    foreign = jwk.generate_key("EC", "P-256", private=True)
    _, claims = segments(auth.login()["access_token"])
    garbage = [
        sign(foreign, "ES256", {"typ": "at+jwt", "kid": f"garbage-{i}"}, claims) for i in range(50)
    ]

    def attack(tokens):
        for token in tokens:
            with pytest.raises(InvalidToken, match="unknown key"):
                validator.validate(token)

    run_threads(attack, [(garbage,)] * 8)
    assert auth.jwks_counter.jwks_requests == 2  # 400 unknown-kid tokens, one re-fetch
    assert sleep.waits and max(sleep.waits) <= 10
    clock.advance(9.9)
    attack(garbage[:5])
    assert auth.jwks_counter.jwks_requests == 2
    assert min(sleep.waits[-5:]) == pytest.approx(0.1)  # only the rest of the interval
    clock.advance(0.2)
    attack(garbage[:5])
    assert auth.jwks_counter.jwks_requests == 3
    # Known kids keep validating from the cache meanwhile.
    validator.validate(auth.login()["access_token"])
    assert auth.jwks_counter.jwks_requests == 3


def test_concurrent_unknown_kids_wait_out_the_interval_and_share_one_fetch(auth):
    """Eight threads with garbage kids inside the interval all wait (none longer than the
    interval), then exactly one of them fetches; all are refused. Tokens that fail their
    claims anyway (another issuer, expired) are refused without waiting."""
    clock = FakeClock()
    sleep = GatedSleep(clock)
    validator = validator_for(
        auth, min_refetch_interval=10, max_unknown_kid_wait=10, clock=clock, sleep=sleep
    )
    validator.validate(auth.login()["access_token"])
    clock.advance(4)
    foreign = jwk.generate_key("EC", "P-256", private=True)
    _, claims = segments(auth.login()["access_token"])
    garbage = [
        sign(foreign, "ES256", {"typ": "at+jwt", "kid": f"garbage-{i}"}, claims) for i in range(8)
    ]
    hopeless = [
        sign(foreign, "ES256", {"typ": "at+jwt", "kid": "x"}, {**claims, **changes})
        for changes in ({"iss": "https://other.example"}, {"exp": clock() - 100})
    ]
    for token in hopeless:
        with pytest.raises(InvalidToken, match="unknown key"):
            validator.validate(token)
    assert sleep.waits == []
    refused: list[str] = []

    def validate(token):
        try:
            validator.validate(token)
        except InvalidToken as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=validate, args=(token,)) for token in garbage]
    for thread in threads:
        thread.start()
    sleep.wait_for_sleepers(8, threads)
    assert auth.jwks_counter.jwks_requests == 1
    assert sleep.waits == [6] * 8  # the rest of the interval
    sleep.release(6)
    for thread in threads:
        thread.join()
    assert auth.jwks_counter.jwks_requests == 2
    assert len(refused) == 8 and all("unknown key" in text for text in refused)


def test_a_key_activated_right_after_a_fetch_validates_after_waiting(auth):
    """Regression (rotation flake): the validator fetched the JWKS, then two rotations in a
    row made a key that JWKS did not hold active. Its tokens used to be refused as signed by
    an unknown key until min_refetch_interval had passed; now each waits the rest of the
    interval, and the waiters (from several threads) share one re-fetch that finds the key."""

    def rotated_twice_after_a_fetch(sleep) -> tuple[JWKSValidator, list[str]]:
        validator = validator_for(
            auth, min_refetch_interval=10, max_unknown_kid_wait=10, clock=clock, sleep=sleep
        )
        validator.validate(auth.login()["access_token"])
        runner = auth.app.test_cli_runner()
        for _ in range(2):
            assert runner.invoke(args=["keys", "rotate"]).exit_code == 0
        auth.app.extensions["tessera"].keyring.invalidate()  # sign with the new key now
        tokens = [auth.login()["access_token"] for _ in range(4)]
        assert segments(tokens[0])[0]["kid"] not in validator._keyset.keys
        return validator, tokens

    clock = FakeClock()
    # One caller; its wait moves the fake clock by what it asks for.
    validator, tokens = rotated_twice_after_a_fetch(clock.advance)
    before, started = auth.jwks_counter.jwks_requests, clock()
    assert validator.validate(tokens[0])
    assert auth.jwks_counter.jwks_requests == before + 1
    assert clock() - started == pytest.approx(10)

    # Four threads at once: all wait, one fetch serves them all.
    sleep = GatedSleep(clock)
    validator, tokens = rotated_twice_after_a_fetch(sleep)
    before = auth.jwks_counter.jwks_requests
    accepted: list[str] = []

    def validate(token):
        accepted.append(validator.validate(token)["jti"])

    threads = [threading.Thread(target=validate, args=(token,)) for token in tokens]
    for thread in threads:
        thread.start()
    sleep.wait_for_sleepers(4, threads)
    assert auth.jwks_counter.jwks_requests == before
    sleep.release(10)
    for thread in threads:
        thread.join()
    assert sorted(accepted) == sorted(segments(token)[1]["jti"] for token in tokens)
    assert auth.jwks_counter.jwks_requests == before + 1
    assert sleep.waits == [10] * 4


def test_jwks_outage_is_jwks_unavailable_not_invalid_token(auth, serve):
    """No JWKS at all is JWKSUnavailable (a 503 for the caller); a cached key set keeps serving
    its kids through an outage; a refused connection is JWKSUnavailable too."""
    token = auth.login()["access_token"]
    auth.jwks_counter.jwks_down = True
    clock = FakeClock()
    validator = validator_for(auth, clock=clock, jwks_cache_seconds=60)
    with pytest.raises(JWKSUnavailable):
        validator.validate(token)
    # Within min_refetch_interval the failure is answered from memory, not by asking again.
    with pytest.raises(JWKSUnavailable):
        validator.validate(token)
    assert auth.jwks_counter.jwks_requests == 1
    auth.jwks_counter.jwks_down = False
    clock.advance(10)
    assert validator.validate(token)
    auth.jwks_counter.jwks_down = True
    clock.advance(61)  # the cache is stale and the refresh fails: the stale set still serves
    assert validator.validate(token)
    with pytest.raises(JWKSUnavailable):  # an unknown kid cannot be judged during an outage
        foreign = jwk.generate_key("EC", "P-256", private=True)
        clock.advance(10)
        validator.validate(
            sign(foreign, "ES256", {"typ": "at+jwt", "kid": "new"}, segments(token)[1])
        )
    closed = serve()
    url = closed.url
    closed.stop()
    with pytest.raises(JWKSUnavailable):
        JWKSValidator(auth.settings.auth_issuer, url + JWKS_PATH, NOTES).validate(token)


def test_deeply_nested_header_is_invalid_token_not_recursion_error():
    """A 2.8 KB token whose header is 2,100 nested arrays is InvalidToken (json.loads alone
    would raise RecursionError), and no JWKS is fetched for it."""
    token = f"{b64(b'[' * 2100)}.{b64({'sub': 'x'})}.c2ln"
    assert len(token) < 2900
    with JWKSValidator("https://as.example", "http://127.0.0.1:9/jwks", NOTES) as validator:
        with pytest.raises(InvalidToken) as caught:
            validator.validate(token)
        assert validator.fetch_count == 0
    assert caught.value.description == "The access token header is malformed."


def test_deeply_nested_jwks_document_is_jwks_unavailable(serve, foreign_token):
    """A JWKS endpoint answering JSON nested 100,000 deep is JWKSUnavailable (a 503 for the
    caller), not a RecursionError."""
    document = b"[" * 100_000 + b"]" * 100_000
    app = Flask(__name__)
    app.get(JWKS_PATH)(lambda: (document, 200, {"Content-Type": "application/json"}))
    server = serve(app)
    with (
        JWKSValidator("https://as.example", server.url + JWKS_PATH, NOTES) as validator,
        pytest.raises(JWKSUnavailable),
    ):
        validator.validate(foreign_token)


@pytest.fixture
def foreign_token() -> str:
    """A well-formed token whose kid ("k") no JWKS here holds: validating it fetches the JWKS."""
    key = jwk.generate_key("EC", "P-256", private=True)
    now = int(time.time())
    claims = {"iss": "https://as.example", "aud": NOTES, "exp": now + 60, "iat": now}
    return sign(key, "ES256", {"typ": "at+jwt", "kid": "k"}, claims)


@pytest.mark.parametrize("head_too", [True, False], ids=["head-and-body", "body-only"])
def test_trickling_jwks_endpoint_is_unavailable_by_the_total_deadline(foreign_token, head_too):
    """A JWKS endpoint sending one byte every 50 ms (each within the 0.3 s read timeout, the
    whole answer over 10 s) costs one fetch total_timeout (0.6 s), then JWKSUnavailable: the
    fetch holds the lock every validation of an unknown kid waits on."""
    server = TricklingAuthorizationServer(head_too=head_too)
    try:
        with JWKSValidator(
            "https://as.example",
            server.url + JWKS_PATH,
            NOTES,
            timeout=(0.5, 0.3),
            total_timeout=0.6,
        ) as validator:
            started = time.monotonic()
            with pytest.raises(JWKSUnavailable):
                validator.validate(foreign_token)
            elapsed = time.monotonic() - started
    finally:
        server.stop()
    assert server.bytes_sent > 0
    assert 0.5 < elapsed < 3.0, elapsed


def test_jwks_over_max_jwks_bytes_is_unavailable(serve, foreign_token):
    """A JWKS document larger than max_jwks_bytes is JWKSUnavailable, not read to its end."""
    document = json.dumps({"keys": [], "pad": "x" * 5000}).encode()
    app = Flask(__name__)
    app.get(JWKS_PATH)(lambda: (document, 200, {"Content-Type": "application/json"}))
    server = serve(app)
    url = server.url + JWKS_PATH
    with (
        JWKSValidator("https://as.example", url, NOTES, max_jwks_bytes=4096) as validator,
        pytest.raises(JWKSUnavailable, match="too large"),
    ):
        validator.validate(foreign_token)
    with (
        JWKSValidator("https://as.example", url, NOTES, max_jwks_bytes=len(document)) as validator,
        pytest.raises(InvalidToken, match="unknown key"),
    ):
        validator.validate(foreign_token)


def test_an_unknown_kid_waits_only_when_the_next_fetch_is_within_a_second(auth):
    """By default an unknown kid waits for the next allowed fetch only if it is at most
    max_unknown_kid_wait (1 s) away: forged tokens with made-up kids cannot hold a request
    thread for the whole min_refetch_interval."""
    clock = FakeClock()
    sleep = GatedSleep(clock, blocking=False)
    validator = validator_for(auth, min_refetch_interval=10, clock=clock, sleep=sleep)
    validator.validate(auth.login()["access_token"])
    foreign = jwk.generate_key("EC", "P-256", private=True)
    _, claims = segments(auth.login()["access_token"])
    garbage = sign(foreign, "ES256", {"typ": "at+jwt", "kid": "made-up"}, claims)
    clock.advance(2)  # the next fetch is 8 s away: refused at once
    with pytest.raises(InvalidToken):
        validator.validate(garbage)
    assert sleep.waits == []
    clock.advance(7.5)  # 0.5 s away: waited out, then refused after one fetch
    with pytest.raises(InvalidToken):
        validator.validate(garbage)
    # (this fake sleep does not move the clock, so the validator tries a second short sleep)
    assert sleep.waits and max(sleep.waits) == pytest.approx(0.5)
