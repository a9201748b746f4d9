"""Tessera authorization server: issues RFC 9068 access tokens and rotating refresh tokens,
answers RFC 7662 introspection and RFC 7009 revocation, publishes RFC 8414 metadata and JWKS."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from flask import Flask
from flask_migrate import Migrate
from sqlalchemy import inspect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, scoped_session, sessionmaker

from auth_server import audit, fast_paths, introspection_memory
from auth_server.audit_buffer import AuditBuffer
from auth_server.client_credentials_wsgi import ClientCredentialsFastPath
from auth_server.clients import ClientDirectory, public_client_origins
from auth_server.components import AuthComponents
from auth_server.db import db
from auth_server.dpop import DPoPNonces, TokenEndpointDPoP
from auth_server.hashing_gate import PasswordCheckGate
from auth_server.introspection_wsgi import IntrospectionFastPath
from auth_server.keys import KeyCipher, KeyRing, create_secret_file, prepare_signing_keys
from auth_server.metrics import AuthMetrics
from auth_server.models import DPoPProofSeen, SigningKey
from auth_server.passwords import Passwords
from auth_server.protocol.client_credentials import SelfContainedIssuance
from auth_server.revocation_events import RevocationPublisher
from auth_server.self_contained import ClientEpochs, SelfContainedTokens, TokenSignatures
from auth_server.session_cookie import CookieSessionOnDemand
from auth_server.settings import AuthSettings
from auth_server.throttle import Limit, LoginThrottle, counter_store
from auth_server.tokens import TokenPolicy
from shared.guard.dpop_replay import SeenProofs
from shared.service import openapi, request_id
from shared.service.cors import Cors
from shared.service.database import (
    configure_engine,
    end_sessions_without_failing,
    engine_options,
    reader_engine,
)
from shared.service.flask_app import ServiceFlask
from shared.service.logging import configure_logging
from shared.service.proxy import trust_proxies
from shared.service.request_body import limit_request_bodies
from shared.service.settings import ConfigurationError

log = logging.getLogger("tessera.auth")

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SESSION_SECRET_MIN_LENGTH = 32
# What a public client's page may call cross-origin: the origins of public clients' redirect
# URIs are allowed, nothing else (shared/service/cors.py).
BROWSER_APP_ENDPOINTS = frozenset({"/oauth/token", "/oauth/revoke"})


def _self_contained_tokens(settings: AuthSettings, components: AuthComponents) -> None:
    """Looking up self-contained tokens always works (a server switched back to stored tokens
    still knows the ones it issued); issuing them is CLIENT_CREDENTIALS_TOKENS."""
    reader = components.reader
    assert reader is not None
    keyring = components.keyring
    components.self_contained_tokens = SelfContainedTokens(
        TokenSignatures(keyring.jwks, keyring.invalidate), settings.auth_issuer
    )
    if settings.client_credentials_tokens == "self-contained":
        memory = components.introspection_memory
        components.self_contained_issuance = SelfContainedIssuance(
            epochs=ClientEpochs(reader, memory.generation if memory is not None else None),
            audit_rows=AuditBuffer(reader),
        )


def create_app(
    settings: AuthSettings | None = None,
    *,
    create_tables: bool = False,
    clock: Callable[[], float] = time.time,
) -> Flask:
    """Build an authorization server. `settings` default to the environment; `clock` is for
    tests that need time to pass without sleeping.

    Tables are created here only when a test asks (`create_tables=True`): every database, the
    demo's included, is migrated with `flask --app auth_server db upgrade`
    (auth_server/migrations).
    """
    settings = settings or AuthSettings()
    configure_logging(settings.log_level, settings.log_format)

    # /static/: the stylesheet of the pages people see (auth_server/static/tessera.css).
    app = ServiceFlask(__name__, static_folder="static", static_url_path="/static")
    app.config.update(
        SQLALCHEMY_DATABASE_URI=settings.auth_database_url,
        # No pre-ping: introspection retries its read on a dropped connection, other requests
        # answer 503 once per worker (shared/service/database.py).
        SQLALCHEMY_ENGINE_OPTIONS=engine_options(
            settings.auth_database_url, settings, pre_ping=False
        ),
        # The session is one cookie: the CSRF token of the login form (endpoints/authorize.py).
        SECRET_KEY=_session_secret(settings),
        SESSION_COOKIE_NAME="tessera_login",
        SESSION_COOKIE_PATH="/oauth/authorize",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.auth_issuer.startswith("https://"),
    )
    app.session_interface = CookieSessionOnDemand()
    # First of the hooks: 413 for bodies over MAX_REQUEST_BYTES, chunked ones included.
    limit_request_bodies(app, settings.max_request_bytes)
    db.init_app(app)
    end_sessions_without_failing(app, cast("scoped_session[Any]", db.session))
    with app.app_context():
        engine = db.engine
        configure_engine(engine, settings)
        if create_tables:
            db.create_all()
    # `flask --app auth_server db ...`; batch mode so SQLite can ALTER by copying the table.
    Migrate(app, db, directory=str(MIGRATIONS_DIR), render_as_batch=True)

    demo_generates_key = settings.tessera_demo and not settings.auth_key_encryption_key
    if demo_generates_key and KeyCipher.create_key_file(settings.auth_key_encryption_key_file):
        log.warning(
            "demo mode: generated a key-encryption key in %s", settings.auth_key_encryption_key_file
        )
    cipher = KeyCipher.from_settings(
        settings.auth_key_encryption_key, settings.auth_key_encryption_key_file
    )
    if not cipher.enabled and not settings.tessera_demo:
        log.warning(
            "AUTH_KEY_ENCRYPTION_KEY is not set: private signing keys are stored unencrypted"
        )
    # The sessions this app makes (db.session for requests and the CLI; `sessions` for the key
    # ring and start-up) publish the audit events committed through them, to this app alone.
    audit_trail = audit.AuditTrail(engine)
    sessions = sessionmaker(bind=engine)
    audit_trail.watch(db.session)
    audit_trail.watch(sessions)
    metrics = AuthMetrics()
    components = AuthComponents(
        settings=settings,
        audit_trail=audit_trail,
        sessions=sessions,
        cipher=cipher,
        keyring=KeyRing(
            session_factory=sessions,
            cipher=cipher,
            alg=settings.signing_alg,
            cache_seconds=settings.key_cache_seconds,
            rotation_days=settings.signing_key_rotation_days,
            clock=clock,
        ),
        passwords=Passwords(
            time_cost=settings.password_hash_time_cost,
            memory_kib=settings.password_hash_memory_kib,
            parallelism=settings.password_hash_parallelism,
            min_length=settings.password_min_length,
            max_concurrent=settings.password_hash_concurrency,
            niceness=settings.password_hash_niceness,
        ),
        login_throttle=LoginThrottle(
            counter_store(settings.ratelimit_storage_uri, engine),
            per_username_and_ip=Limit.parse(settings.login_failures_per_username_and_ip),
            per_ip=Limit.parse(settings.login_failures_per_ip),
            per_username=Limit.parse(settings.login_failures_per_username),
            clock=clock,
            on_throttled=metrics.count_login_throttled,
        ),
        token_policy=TokenPolicy(
            issuer=settings.auth_issuer,
            access_token_ttl=settings.access_token_ttl,
            refresh_token_idle_ttl=settings.refresh_token_idle_ttl,
            refresh_token_max_ttl=settings.refresh_token_max_ttl,
            refresh_reuse_grace=settings.refresh_reuse_grace,
            authorization_code_ttl=settings.authorization_code_ttl,
        ),
        clock=clock,
        metrics=metrics,
        clients=ClientDirectory(settings.client_cache_seconds, wall_clock=clock),
        dpop=TokenEndpointDPoP(
            SeenProofs(lambda: engine, DPoPProofSeen.__table__),
            settings.dpop_proof_max_age,
            DPoPNonces(app.config["SECRET_KEY"]) if settings.dpop_nonce_required else None,
        ),
        reader=reader_engine(engine),
    )
    components.introspection_memory = introspection_memory.install(
        audit_trail,
        settings.auth_database_url,
        components.reader or engine,
        remember=settings.introspection_memory,
        directory=settings.introspection_memory_dir,
        poll_seconds=settings.introspection_memory_poll_ms / 1000,
    )
    _prepare_signing_keys(engine, sessions, components)
    _self_contained_tokens(settings, components)
    app.extensions["tessera"] = components

    from auth_server import cli, web_errors
    from auth_server.endpoints import (
        account,
        account_page,
        authorize,
        health,
        introspect,
        metadata,
        revoke,
        token,
    )

    for blueprint in (
        authorize.bp,
        token.bp,
        introspect.bp,
        revoke.bp,
        metadata.bp,
        health.bp,
        account.bp,
        account_page.bp,
    ):
        app.register_blueprint(blueprint)
    # Browser apps (public clients) call these from their own pages.
    Cors(
        applies=lambda path: path in BROWSER_APP_ENDPOINTS,
        allowed_origins=_public_client_origins,
        methods=("POST",),
        headers=("Content-Type",),
    ).init_app(app)
    openapi.init_app(app, __name__)
    web_errors.register_error_handlers(app)
    # Inside the request bookkeeping (request id, metrics) and the proxy fix, outside Flask:
    # the common introspection and client_credentials requests are answered without Flask
    # (auth_server/fast_paths.py), each request handed to the one of its path by one lookup.
    fast_paths.install(app, components, ClientCredentialsFastPath, IntrospectionFastPath)
    request_id.init_app(app)
    # Innermost: its refusals skip Flask, and the proxy fix still applies outside it.
    app.wsgi_app = PasswordCheckGate(  # type: ignore[method-assign]
        app.wsgi_app,
        components.passwords,
        settings.max_request_bytes,
        on_refused=components.metrics.count_password_hashing_busy,
    )
    trust_proxies(app, settings.trusted_proxies)
    components.metrics.init_app(app)
    audit_trail.subscribe(components.metrics.on_audit_event)
    if settings.revocation_events_url:
        publisher = RevocationPublisher(
            settings.revocation_events_url,
            settings.revocation_events_channel,
            settings.auth_issuer,
            engine,
            timeout=settings.revocation_events_publish_timeout,
            clock=components.clock,
            on_publish=components.metrics.count_revocation_event,
        )
        audit_trail.subscribe(publisher.on_audit_event)
    cli.register(app)
    return app


def _prepare_signing_keys(
    engine: Engine, sessions: sessionmaker[Session], components: AuthComponents
) -> None:
    """Start-up is where keys are created and a due rotation is made (the key ring only reads:
    auth_server/keys.py). Before `db upgrade` has made the tables there is nothing to do, and a
    database that is down now leaves the work to the next start or `keys prepare`."""
    settings = components.settings
    try:
        if not inspect(engine).has_table(SigningKey.__tablename__):
            return
        with sessions() as session:
            prepare_signing_keys(
                session,
                settings.signing_alg,
                components.cipher,
                int(components.now()),
                settings.key_retirement_seconds,
                settings.signing_key_rotation_days,
            )
    except SQLAlchemyError as exc:
        log.error("could not prepare the signing keys at start-up: %s", exc.__class__.__name__)


def _public_client_origins() -> frozenset[str]:
    """No origin is allowed while the database cannot say which are: the answer (a 503, say)
    then goes out without CORS headers rather than failing again in its after-request hook."""
    try:
        return public_client_origins(db.session)
    except SQLAlchemyError:
        log.warning("cannot read the public clients' origins; answering without CORS")
        db.session.rollback()
        return frozenset()


def _session_secret(settings: AuthSettings) -> str:
    """AUTH_SESSION_SECRET, else the content of AUTH_SESSION_SECRET_FILE, which demo mode
    generates (as it does the key-encryption key). Anything else stops start-up."""
    secret = settings.auth_session_secret
    path = Path(settings.auth_session_secret_file)
    if not secret:
        if settings.tessera_demo and create_secret_file(
            str(path), secrets.token_urlsafe(32).encode()
        ):
            log.warning("demo mode: generated a session secret in %s", path)
        if path.is_file():
            secret = path.read_text().strip()
    if not secret:
        raise ConfigurationError(
            "AUTH_SESSION_SECRET must be set: it signs the login page's cookie. Make one with "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))' and give every "
            "worker and replica the same (TESSERA_DEMO=1 generates one for local demos only)"
        )
    if len(secret) < SESSION_SECRET_MIN_LENGTH:
        raise ConfigurationError(
            f"AUTH_SESSION_SECRET must be at least {SESSION_SECRET_MIN_LENGTH} characters"
        )
    return secret
