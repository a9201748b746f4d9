"""The client library (shared/client/oauth.py) against a real authorization server and notes API
over real HTTP: discovery, refresh on 401 invalid_token with rotation, one refresh for many threads,
re-login, logout, keyring storage; and a third-party client (requests-oauthlib) for good
measure. Nothing is mocked; tokens that must expire live two seconds."""

from __future__ import annotations

import threading
import time
from urllib.parse import parse_qs, urlsplit

import keyring
import keyring.backend
import keyring.core
import keyring.errors
import pytest
import requests
from flask import Flask, Response, request
from oauthlib.oauth2 import LegacyApplicationClient
from requests_oauthlib import OAuth2Session

from shared.client import (
    DiscoveryError,
    KeyringTokenStore,
    LoginRequired,
    OAuthClient,
    TokenEndpointError,
    Tokens,
)
from tests.support import ALICE, DEMO_APP, start_auth_server, start_resource_server

WELL_KNOWN = "/.well-known/oauth-authorization-server"


class Traffic:
    """Every response a client's session receives, seen through a requests response hook."""

    def __init__(self, session: requests.Session) -> None:
        self.seen: list[tuple[str, str, int, dict]] = []
        self._lock = threading.Lock()
        session.hooks["response"].append(self._record)

    def _record(self, response: requests.Response, *args, **kwargs) -> None:
        sent = response.request
        body = sent.body.decode() if isinstance(sent.body, bytes) else sent.body or ""
        form = {k: v[0] for k, v in parse_qs(body).items()} if sent.method == "POST" else {}
        with self._lock:
            self.seen.append((sent.method, urlsplit(sent.url).path, response.status_code, form))

    def grants(self, grant_type: str) -> int:
        return sum(
            1
            for _, path, _, form in self.seen
            if path == "/oauth/token" and form.get("grant_type") == grant_type
        )

    @property
    def refreshes(self) -> int:
        return self.grants("refresh_token")

    @property
    def token_calls(self) -> int:
        return sum(1 for _, path, _, _ in self.seen if path == "/oauth/token")

    def count(self, path: str, status: int | None = None) -> int:
        return sum(1 for _, p, s, _ in self.seen if p == path and status in (None, s))


def make_client(auth, **options) -> tuple[OAuthClient, Traffic]:
    session = requests.Session()
    traffic = Traffic(session)
    return OAuthClient(auth.url, *DEMO_APP, session=session, **options), traffic


def wait_until_expired(auth, access_token: str, limit: float = 5.0) -> None:
    """Poll introspection rather than sleep a fixed time: the AS rounds issue times down."""
    deadline = time.monotonic() + limit
    while auth.is_active(access_token):
        assert time.monotonic() < deadline, "the access token did not expire"
        time.sleep(0.05)


@pytest.fixture
def expiring(serve, make_database_url):
    """An AS whose access tokens live 2 s (1-2 s after rounding) and a notes API trusting it.

    Not 1 s: a token refreshed at x.99 would then expire before the retry reached the API.
    """
    auth = start_auth_server(serve, make_database_url("auth"), access_token_ttl=2)
    return auth, start_resource_server(serve, make_database_url("notes"), auth)


class MemoryKeyring(keyring.backend.KeyringBackend):
    """A keyring backend in a dict: the tests never touch the OS keyring."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service, username):
        return self.entries.get((service, username))

    def set_password(self, service, username, password):
        self.entries[(service, username)] = password

    def delete_password(self, service, username):
        if self.entries.pop((service, username), None) is None:
            raise keyring.errors.PasswordDeleteError("not found")


@pytest.fixture
def memory_keyring(monkeypatch) -> MemoryKeyring:
    # Restores whatever backend was (or was not yet) chosen, without making keyring probe the OS.
    monkeypatch.setattr(keyring.core, "_keyring_backend", keyring.core._keyring_backend)
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    return backend


def test_login_through_discovery_then_call_the_api(auth, notes_api):
    """The endpoints come from RFC 8414 metadata (fetched once) and the API answers 200."""
    client, traffic = make_client(auth)
    tokens = client.login_password(*ALICE)
    assert tokens.refresh_token and tokens.scope == "profile notes:read notes:write"

    me = client.get(f"{notes_api.url}/api/me")
    assert me.status_code == 200, me.text
    assert me.json()["username"] == "alice"
    created = client.post(f"{notes_api.url}/api/notes", json={"body": "from the client"})
    assert created.status_code == 201, created.text
    notes = client.get(f"{notes_api.url}/api/notes").json()["notes"]
    assert [note["body"] for note in notes] == ["from the client"]

    client.login_password(*ALICE)
    assert traffic.count(WELL_KNOWN) == 1
    assert traffic.grants("password") == 2 and traffic.refreshes == 0
    # Neither repr nor str of the tokens shows a token.
    for text in (repr(tokens), str(tokens)):
        assert tokens.access_token not in text and tokens.refresh_token not in text


def test_expired_access_token_is_refreshed_once_rotated_and_the_request_retried(expiring):
    """401 invalid_token -> one refresh, the rotated refresh token stored, the retry succeeds."""
    auth, notes = expiring
    client, traffic = make_client(auth, expiry_skew=None)  # only the 401 may trigger a refresh
    old = client.login_password(*ALICE)
    wait_until_expired(auth, old.access_token)

    response = client.get(f"{notes.url}/api/notes")

    assert response.status_code == 200, response.text
    assert traffic.count("/api/notes", 401) == 1 and traffic.refreshes == 1
    new = client.tokens
    assert new.access_token != old.access_token
    assert new.refresh_token != old.refresh_token
    assert client.store.load() == new
    assert client.get(f"{notes.url}/api/me").status_code == 200
    assert traffic.refreshes == 1
    # Last, because replaying the consumed refresh token revokes the whole login.
    assert auth.refresh(old.refresh_token).json()["error"] == "invalid_grant"


def test_access_token_about_to_expire_is_refreshed_before_sending(expiring):
    """Within expiry_skew (2 s) of expires_in the client refreshes first: no 401 at all."""
    auth, notes = expiring
    client, traffic = make_client(auth)
    client.login_password(*ALICE)  # expires_in 2: already inside the default 2 s skew

    assert client.get(f"{notes.url}/api/me").status_code == 200
    assert traffic.refreshes == 1 and traffic.count("/api/me", 401) == 0


def test_threads_sharing_a_client_refresh_exactly_once(expiring):
    """16 threads hit 401 together: one refresh, every request succeeds, the login survives."""
    auth, notes = expiring
    client, traffic = make_client(auth, expiry_skew=None)
    old = client.login_password(*ALICE)
    wait_until_expired(auth, old.access_token)
    threads_count = 16
    barrier = threading.Barrier(threads_count)
    statuses: list[int] = []

    def call() -> None:
        barrier.wait()
        statuses.append(client.get(f"{notes.url}/api/notes").status_code)

    threads = [threading.Thread(target=call) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert statuses == [200] * threads_count
    assert traffic.refreshes == 1
    assert traffic.count("/api/notes", 401) >= 1
    # No second use of the consumed refresh token: the family is alive.
    assert auth.is_active(client.tokens.refresh_token)
    assert client.get(f"{notes.url}/api/me").status_code == 200


def test_revoked_login_raises_login_required_without_a_relogin_callback(auth, notes_api):
    """The refresh answers invalid_grant: LoginRequired, and the dead tokens are forgotten."""
    client, traffic = make_client(auth)
    client.login_password(*ALICE)
    result = auth.app.test_cli_runner().invoke(args=["users", "revoke-tokens", "alice"])
    assert result.exit_code == 0, result.output

    with pytest.raises(LoginRequired) as caught:
        client.get(f"{notes_api.url}/api/me")

    assert caught.value.error == "invalid_grant" and caught.value.description
    assert traffic.refreshes == 1
    assert client.tokens is None and client.store.load() is None
    calls = len(traffic.seen)
    with pytest.raises(LoginRequired):
        client.get(f"{notes_api.url}/api/me")
    assert len(traffic.seen) == calls  # nothing left to send


def test_revoked_login_calls_relogin_and_the_request_succeeds(auth, notes_api):
    """With a relogin callback that logs in again, the original request is retried and works."""
    logins: list[OAuthClient] = []

    def relogin(client: OAuthClient) -> None:
        logins.append(client)
        client.login_password(*ALICE)

    client, traffic = make_client(auth, relogin=relogin)
    first = client.login_password(*ALICE)
    auth.app.test_cli_runner().invoke(args=["users", "revoke-tokens", "alice"])

    response = client.get(f"{notes_api.url}/api/me")

    assert response.status_code == 200, response.text
    assert logins == [client] and traffic.refreshes == 1
    assert client.tokens.refresh_token != first.refresh_token


def test_insufficient_scope_is_returned_as_is_without_refresh(auth, notes_api):
    """403 insufficient_scope is the caller's business: no refresh, no retry."""
    client, traffic = make_client(auth)
    tokens = client.login_password(*ALICE, scope="profile")

    response = client.post(f"{notes_api.url}/api/notes", json={"body": "no"})

    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    assert traffic.refreshes == 0 and traffic.count("/api/notes") == 1
    assert client.tokens == tokens


def test_bare_401_is_not_refreshed(auth, serve):
    """A 401 without an error code (RFC 6750 §3.1) is returned once, with no refresh."""
    seen: list[str | None] = []
    api = Flask("bare")

    @api.get("/bare")
    def bare():
        seen.append(request.headers.get("Authorization"))
        return Response("{}", 401, {"WWW-Authenticate": 'Bearer realm="bare"'})

    server = serve(api)
    client, traffic = make_client(auth)
    tokens = client.login_password(*ALICE)

    response = client.get(f"{server.url}/bare")

    assert response.status_code == 401
    assert seen == [f"Bearer {tokens.access_token}"]
    assert traffic.refreshes == 0


def test_logout_revokes_the_whole_login(auth, notes_api):
    """RFC 7009 on the refresh token: the old access token is refused by the API afterwards."""
    client, traffic = make_client(auth)
    old = client.login_password(*ALICE)
    assert notes_api.get("/api/me", token=old.access_token).status_code == 200

    client.logout()

    revocations = [form for _, path, _, form in traffic.seen if path == "/oauth/revoke"]
    assert revocations == [{"token": old.refresh_token, "token_type_hint": "refresh_token"}]
    refused = notes_api.get("/api/me", token=old.access_token)
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
    assert auth.refresh(old.refresh_token).json()["error"] == "invalid_grant"
    assert client.tokens is None and client.store.load() is None
    with pytest.raises(LoginRequired):
        client.get(f"{notes_api.url}/api/me")


def test_keyring_store_round_trips_and_a_new_client_reuses_its_tokens(
    auth, notes_api, memory_keyring
):
    """Tokens survive in the keyring as JSON; a new client uses them without logging in."""
    client, _ = make_client(auth, token_store=KeyringTokenStore("tessera-tests", "alice"))
    tokens = client.login_password(*ALICE)
    assert ("tessera-tests", "alice") in memory_keyring.entries

    store = KeyringTokenStore("tessera-tests", "alice")
    assert store.load() == tokens
    restarted, traffic = make_client(auth, token_store=store)
    assert restarted.tokens == tokens
    assert restarted.get(f"{notes_api.url}/api/me").status_code == 200
    assert traffic.token_calls == 0 and traffic.count(WELL_KNOWN) == 0

    store.clear()
    assert store.load() is None
    store.clear()  # already clear: no error


def test_metadata_naming_another_issuer_is_refused(serve, make_database_url):
    """RFC 8414 §3.3: an issuer mismatch raises before any credentials are sent."""
    impostor = start_auth_server(
        serve, make_database_url("auth"), auth_issuer="https://auth.example"
    )
    client, traffic = make_client(impostor)

    with pytest.raises(DiscoveryError, match="https://auth.example"):
        client.login_password(*ALICE)

    assert traffic.token_calls == 0 and client.tokens is None


def test_token_endpoint_errors_carry_the_oauth_error(auth):
    """A wrong password is TokenEndpointError(invalid_grant, 400), not LoginRequired."""
    client, _ = make_client(auth)
    with pytest.raises(TokenEndpointError) as caught:
        client.login_password("alice", "not-her-password")
    assert (caught.value.error, caught.value.status) == ("invalid_grant", 400)
    with pytest.raises(TokenEndpointError) as caught:
        client.login_password(*ALICE, scope="admin")
    assert caught.value.error == "invalid_scope"


def test_client_credentials_token_is_fetched_again_when_refused(auth, notes_api):
    """No refresh token in client_credentials (RFC 6749 §4.4.3): a refused token is re-fetched."""
    client, traffic = make_client(auth)
    tokens = client.login_client_credentials(scope="notes:read")
    assert isinstance(tokens, Tokens) and tokens.refresh_token is None
    assert auth.revoke(tokens.access_token, token_type_hint="access_token").status_code == 200

    response = client.get(f"{notes_api.url}/api/notes")

    assert response.status_code == 200, response.text
    assert traffic.grants("client_credentials") == 2 and traffic.refreshes == 0


def test_third_party_client_requests_oauthlib_works(auth, notes_api, monkeypatch):
    """requests-oauthlib's password grant, at the token endpoint from discovery, works too."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # loopback test servers are http
    metadata = requests.get(auth.url + WELL_KNOWN, timeout=10).json()
    session = OAuth2Session(client=LegacyApplicationClient(client_id=DEMO_APP[0]))

    token = session.fetch_token(
        token_url=metadata["token_endpoint"],
        username=ALICE[0],
        password=ALICE[1],
        client_id=DEMO_APP[0],
        client_secret=DEMO_APP[1],
    )

    assert token["token_type"] == "Bearer" and "refresh_token" in token
    me = session.get(f"{notes_api.url}/api/me", timeout=10)
    assert me.status_code == 200, me.text
    assert me.json()["username"] == "alice"
