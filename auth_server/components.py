"""The objects one authorization-server app is made of; they live on app.extensions["tessera"]."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from auth_server.accounts import Accounts
from auth_server.audit import AuditTrail
from auth_server.clients import ClientDirectory
from auth_server.db import db
from auth_server.dpop import TokenEndpointDPoP
from auth_server.epochs import Steps, no_steps
from auth_server.introspection_memory import IntrospectionMemory
from auth_server.keys import KeyCipher, KeyRing
from auth_server.metrics import AuthMetrics
from auth_server.passwords import Passwords
from auth_server.protocol.client_credentials import (
    ClientCredentials,
    SelfContainedIssuance,
    TokenBatches,
    token_batches_for,
)
from auth_server.protocol.server import TesseraAuthorizationServer
from auth_server.revocation import RevocationService
from auth_server.self_contained import SelfContainedTokens
from auth_server.settings import AuthSettings
from auth_server.throttle import LoginThrottle
from auth_server.tokens import TokenPolicy, TokenService


@dataclass
class AuthComponents:
    settings: AuthSettings
    # Where this app's committed audit events go (auth_server/audit.py).
    audit_trail: AuditTrail
    # The app's own sessions outside a request (key ring, start-up); requests use db.session.
    sessions: sessionmaker[Session]
    cipher: KeyCipher
    keyring: KeyRing
    passwords: Passwords
    login_throttle: LoginThrottle
    token_policy: TokenPolicy
    metrics: AuthMetrics
    clients: ClientDirectory
    dpop: TokenEndpointDPoP
    # What single statements outside any transaction run on: the app's engine, in autocommit
    # on PostgreSQL (no BEGIN/COMMIT round trips around one statement). Introspection reads
    # there; client_credentials writes its token in one statement there (its own transaction,
    # protocol/client_credentials.py), and on SQLite in a transaction it opens itself.
    reader: Engine | None = None
    # The access tokens this worker has introspected (auth_server/introspection_memory.py);
    # None: every introspection reads the database.
    introspection_memory: IntrospectionMemory | None = None
    # Every expiry decision reads this clock; tests pass one they can move forward.
    clock: Callable[[], float] = field(default=time.time)
    # What the services report their steps to (epochs.no_steps); tests pause there.
    steps: Steps = field(default=no_steps)
    # grant_type=client_credentials without Authlib (protocol/client_credentials.py); False
    # sends it through Authlib's grant, which the test comparing both answers uses.
    lean_client_credentials: bool = True
    # The worker's group commit of client_credentials tokens (PostgreSQL; None on SQLite).
    token_batches: TokenBatches | None = field(default=None, init=False, repr=False)
    # CLIENT_CREDENTIALS_TOKENS=self-contained (auth_server/self_contained.py): what issues
    # them and what looks them up; None when client_credentials tokens are stored.
    self_contained_issuance: SelfContainedIssuance | None = None
    self_contained_tokens: SelfContainedTokens | None = None
    # Authlib's server over these components, built with them (never assigned afterwards).
    server: TesseraAuthorizationServer = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.server = TesseraAuthorizationServer(self)
        if self.reader is not None:
            self.token_batches = token_batches_for(self.reader, self.metrics.count_token_batch)

    def now(self) -> int:
        return int(self.clock())

    def tokens(self) -> TokenService:
        return TokenService(
            db.session,
            self.token_policy,
            self.keyring,
            self.clock,
            steps=self.steps,
            forget_client=self.clients.forget,
        )

    def client_credentials(self) -> ClientCredentials:
        assert self.reader is not None  # create_app sets it
        return ClientCredentials(
            self.reader,
            self.token_policy,
            self.keyring,
            self.audit_trail,
            self.clock,
            self.steps,
            self.clients.forget,
            self.token_batches,
            self.self_contained_issuance,
        )

    def revocations(self) -> RevocationService:
        return RevocationService(db.session, self.clock, self.steps, self.self_contained_tokens)

    def accounts(self) -> Accounts:
        return Accounts(db.session, self.passwords, self.clock, self.steps)
