"""Builders for real services in tests: an authorization server with seeded users and clients,
served over HTTP on a free loopback port."""

from __future__ import annotations

import atexit
import base64
import hashlib
import re
import secrets
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from flask import Flask
from sqlalchemy import create_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

import resource_server
from auth_server import create_app
from auth_server.clients import register_client
from auth_server.db import db
from auth_server.settings import AuthSettings
from auth_server.store import TokenRecord, find_refresh_token
from resource_server.settings import ResourceSettings
from shared.protocol.digests import sha256_hex
from shared.service import demo_seed

# Argon2id at its cheapest: the tests exercise the logic, bench/ measures the real cost. Such
# hashes cannot starve anything, so the bound on concurrent hashing (1 per worker in
# production) is lifted here; the tests of the bound set PASSWORD_HASH_CONCURRENCY themselves.
FAST_PASSWORDS = dict(
    password_hash_time_cost=1,
    password_hash_memory_kib=8,
    password_hash_parallelism=1,
    password_hash_concurrency=64,
)

ALICE = demo_seed.USER
BOB = ("bob", "bob-password-1")
NOTES = "urn:tessera:notes"
REPORTS = "urn:tessera:reports"
DEMO_APP = demo_seed.APP
NOTES_API = demo_seed.NOTES_API
REPORTS_API = ("reports-api", "reports-api-secret")
OTHER_APP = ("other-app", "other-app-secret")
SERVICE_APP = ("service-app", "service-app-secret")
# Authorization code clients: a public browser app (no secret) and a confidential web app.
SPA_APP = "spa-app"
SPA_REDIRECT = "https://spa.example.com/callback"
SPA_LOOPBACK_REDIRECT = "http://127.0.0.1:8002/callback?from=spa"
WEB_APP = ("web-app", "web-app-secret")
WEB_REDIRECT = "https://web.example.com/oauth/cb"
# Where the apps of this test process map their host revocation generations
# (INTROSPECTION_MEMORY_DIR): one folder removed at exit, not a file per test database left
# behind in /dev/shm.
GENERATIONS_DIR = tempfile.mkdtemp(prefix="tessera-test-generations-")
atexit.register(shutil.rmtree, GENERATIONS_DIR, True)
# Signs the login page's cookie in every test server (not demo mode: it is required).
SESSION_SECRET = "test-session-secret-" + "x" * 32


@dataclass
class AuthServer:
    url: str
    app: Flask | None  # None: a server in another process (gunicorn)
    settings: AuthSettings
    server: object = None  # the LiveServer, for tests that stop and restart it
    http: requests.Session = field(default_factory=requests.Session)

    def token(self, client=DEMO_APP, **form) -> requests.Response:
        return self.http.post(f"{self.url}/oauth/token", data=form, auth=client, timeout=10)

    def login(self, user=ALICE, client=DEMO_APP, **form) -> dict:
        response = self.token(
            client, grant_type="password", username=user[0], password=user[1], **form
        )
        assert response.status_code == 200, response.text
        return response.json()

    def refresh(self, refresh_token: str, client=DEMO_APP, **form) -> requests.Response:
        return self.token(client, grant_type="refresh_token", refresh_token=refresh_token, **form)

    def introspect(self, token: str, client=NOTES_API, **form) -> requests.Response:
        return self.http.post(
            f"{self.url}/oauth/introspect", data={"token": token, **form}, auth=client, timeout=10
        )

    def revoke(self, token: str, client=DEMO_APP, **form) -> requests.Response:
        return self.http.post(
            f"{self.url}/oauth/revoke", data={"token": token, **form}, auth=client, timeout=10
        )

    def is_active(self, token: str) -> bool:
        """An access token: whether introspection (as the notes API) says it is active. A
        refresh token, which introspection never shows a resource server: whether the
        authorization server's own record of it is live."""
        record = self.refresh_token_record(token)
        if record is not None:
            return record.is_active(int(self.clock()))
        response = self.introspect(token)
        assert response.status_code == 200, response.text
        return response.json()["active"]

    def refresh_token_record(self, token: str) -> TokenRecord | None:
        """The authorization server's record of a refresh token, read from its database."""
        engine = create_engine(self.settings.auth_database_url, poolclass=NullPool)
        try:
            with Session(engine) as session:
                return find_refresh_token(session, sha256_hex(token))
        finally:
            engine.dispose()

    def clock(self) -> float:
        return self.app.extensions["tessera"].clock() if self.app is not None else time.time()


def auth_settings(database_url: str, issuer: str, **overrides) -> AuthSettings:
    values: dict[str, Any] = dict(
        auth_issuer=issuer,
        auth_database_url=database_url,
        auth_key_encryption_key=None,
        auth_key_encryption_key_file="/nonexistent/tessera-test.key",
        auth_session_secret=SESSION_SECRET,
        log_level="ERROR",
        # tests change clients in the database and expect it to count at once
        client_cache_seconds=0,
        introspection_memory_dir=GENERATIONS_DIR,
        **FAST_PASSWORDS,
    )
    values.update(overrides)
    return AuthSettings(**values)


def seed(app) -> None:
    """Users and clients most tests need (the demo's, plus a second of each kind)."""
    components = app.extensions["tessera"]
    with app.app_context():
        accounts = components.accounts()
        accounts.create_user(*ALICE)
        accounts.create_user(*BOB, scopes=["profile", "notes:read"])
        for client_id, secret, grants, scopes, audiences, introspect in (
            (
                *DEMO_APP,
                ["password", "refresh_token", "client_credentials"],
                ["profile", "notes:read", "notes:write"],
                [NOTES],
                False,
            ),
            (
                *OTHER_APP,
                ["password", "refresh_token"],
                ["profile", "notes:read", "reports:read"],
                [NOTES, REPORTS],
                False,
            ),
            (*SERVICE_APP, ["client_credentials"], ["notes:read", "notes:write"], [NOTES], False),
            # resource servers: the audience each serves
            (*NOTES_API, [], [], [NOTES], True),
            (*REPORTS_API, [], [], [REPORTS], True),
        ):
            register_client(
                db.session,
                client_id,
                secret=secret,
                grant_types=grants,
                scopes=scopes,
                audiences=audiences,
                can_introspect=introspect,
            )
        register_client(
            db.session,
            SPA_APP,
            client_type="public",
            grant_types=["authorization_code", "refresh_token"],
            scopes=["profile", "notes:read", "notes:write"],
            audiences=[NOTES],
            redirect_uris=[SPA_REDIRECT, SPA_LOOPBACK_REDIRECT],
        )
        register_client(
            db.session,
            WEB_APP[0],
            secret=WEB_APP[1],
            grant_types=["authorization_code", "refresh_token"],
            scopes=["profile", "notes:read", "notes:write", "reports:read"],
            audiences=[NOTES, REPORTS],
            redirect_uris=[WEB_REDIRECT],
        )


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge), RFC 7636 §4.1-4.2."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def query_of(location: str) -> dict[str, str]:
    """The query parameters of a redirect's Location, one value each."""
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


@dataclass
class Browser:
    """A user agent at the authorization endpoint: its own cookies, never following the
    redirect to the client (the test is the client)."""

    auth: AuthServer
    http: requests.Session = field(default_factory=requests.Session)

    def authorize(self, **params) -> requests.Response:
        return self.http.get(
            f"{self.auth.url}/oauth/authorize", params=params, allow_redirects=False, timeout=10
        )

    def submit(self, page: requests.Response, user=ALICE, **overrides) -> requests.Response:
        """Fill in and post the login form of `page` as a browser would."""
        form = {"csrf_token": csrf_token(page.text), "username": user[0], "password": user[1]}
        form.update(overrides)
        form = {k: v for k, v in form.items() if v is not None}
        return self.http.post(
            self.auth.url + form_action(page.text), data=form, allow_redirects=False, timeout=10
        )

    def login(self, user=ALICE, **params) -> requests.Response:
        page = self.authorize(**params)
        assert page.status_code == 200, page.text
        return self.submit(page, user)


def csrf_token(html: str) -> str:
    return unescape(_first_group(r'name="csrf_token" value="([^"]*)"', html))


def form_action(html: str) -> str:
    return unescape(_first_group(r'<form method="post" action="([^"]*)"', html))


def _first_group(pattern: str, html: str) -> str:
    match = re.search(pattern, html)
    assert match is not None, f"no {pattern!r} in the page:\n{html}"
    return match.group(1)


PARTNER = "partner-app"


def register_partner_app(auth, redirect_uri: str) -> None:
    """A third-party public app (consent screen) of the authorization server `auth`."""
    with auth.app.app_context():
        register_client(
            db.session,
            PARTNER,
            name="Partner Notes",
            client_type="public",
            grant_types=["authorization_code", "refresh_token"],
            scopes=["profile", "notes:read", "notes:write"],
            audiences=[NOTES],
            redirect_uris=[redirect_uri],
            third_party=True,
        )


def code_request(client_id=SPA_APP, redirect_uri=SPA_REDIRECT, challenge=None, **params) -> dict:
    """The parameters of an authorization request with PKCE S256 (RFC 6749 §4.1.1)."""
    values = dict(
        response_type="code",
        client_id=client_id,
        redirect_uri=redirect_uri,
        state=secrets.token_urlsafe(16),
        code_challenge=challenge,
        code_challenge_method="S256",
    )
    values.update(params)
    return {k: v for k, v in values.items() if v is not None}


class FakeClock:
    """The one clock tests move by hand (the app, its key ring, validators and throttles all
    take a `clock`), so expiry needs no sleeping. It starts at the current whole second."""

    def __init__(self, start: float | None = None):
        self.now = float(int(time.time())) if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def start_auth_server(serve, database_url: str, clock=None, **overrides) -> AuthServer:
    server = serve()
    settings = auth_settings(database_url, server.url, **overrides)
    app = create_app(settings, create_tables=True, **({"clock": clock} if clock else {}))
    seed(app)
    server.mount(app)
    return AuthServer(url=server.url, app=app, settings=settings, server=server)


@dataclass
class ResourceServer:
    url: str
    app: Flask | None  # None: a server in another process (gunicorn)
    settings: ResourceSettings
    http: requests.Session = field(default_factory=requests.Session)

    def get(self, path: str, token: str | None = None, **kwargs) -> requests.Response:
        return self.call("GET", path, token, **kwargs)

    def call(self, method: str, path: str, token: str | None = None, **kwargs):
        headers = kwargs.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.http.request(method, self.url + path, headers=headers, timeout=10, **kwargs)


def resource_settings(
    database_url: str, auth: AuthServer, credentials=NOTES_API, **overrides
) -> ResourceSettings:
    """Settings of a resource server that introspects at `auth` with `credentials`."""
    values = dict(
        resource_database_url=database_url,
        auth_server_url=auth.url,
        resource_client_id=credentials[0],
        resource_client_secret=credentials[1],
        log_level="ERROR",
    )
    values.update(overrides)
    return ResourceSettings(**values)


def start_resource_server(
    serve, database_url: str, auth: AuthServer, credentials=NOTES_API, **overrides
) -> ResourceServer:
    """A resource server that introspects at `auth` over real HTTP."""
    settings = resource_settings(database_url, auth, credentials, **overrides)
    app = resource_server.create_app(settings, create_tables=True)
    server = serve(app)
    return ResourceServer(url=server.url, app=app, settings=settings)


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes


def post_chunked(
    url: str, path: str, body: bytes, headers: dict[str, str], chunk_size: int = 512
) -> RawResponse:
    """POST ``body`` with Transfer-Encoding: chunked and no Content-Length, over a raw socket
    (the whole body is sent before the answer is read), and read the answer to the end."""
    parts = urlsplit(url)
    head = [f"POST {path} HTTP/1.1", f"Host: {parts.netloc}", "Transfer-Encoding: chunked"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    head += ["Connection: close", "", ""]
    message = bytearray("\r\n".join(head).encode())
    for start in range(0, len(body), chunk_size):
        chunk = body[start : start + chunk_size]
        message += b"%x\r\n%s\r\n" % (len(chunk), chunk)
    message += b"0\r\n\r\n"
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(message)
        received = bytearray()
        while chunk := sock.recv(65536):
            received += chunk
    head_bytes, _, rest = bytes(received).partition(b"\r\n\r\n")
    status_line, *lines = head_bytes.decode("latin-1").split("\r\n")
    answer_headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        answer_headers[name.strip().lower()] = value.strip()
    return RawResponse(int(status_line.split(" ")[1]), answer_headers, rest)
