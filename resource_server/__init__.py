"""Tessera resource server: a notes API that introspects every bearer token it is sent."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from flask_migrate import Migrate

from resource_server import models  # noqa: F401 - registers the tables on db.metadata
from resource_server.api import bp as api_bp
from resource_server.cli import register_cli
from resource_server.db import db, init_db
from resource_server.errors import register_error_handlers
from resource_server.health import bp as health_bp
from resource_server.metrics import ResourceMetrics
from resource_server.models import DPoPProofSeen
from resource_server.settings import ResourceSettings
from shared.guard.dpop_replay import SeenProofs
from shared.guard.dpop_resource import ResourceDPoP
from shared.guard.introspection import IntrospectionClient
from shared.guard.introspection_cache import CachingIntrospector, IntrospectionCache
from shared.guard.protect import TokenGuard
from shared.guard.revocation_subscriber import RevocationSubscriber
from shared.protocol.oauth_syntax import NO_STORE
from shared.service import openapi, request_id
from shared.service.cors import Cors
from shared.service.flask_app import ServiceFlask
from shared.service.logging import configure_logging
from shared.service.proxy import trust_proxies
from shared.service.request_body import limit_request_bodies

SETTINGS_KEY = "tessera_settings"
SUBSCRIBER_KEY = "tessera_revocation_subscriber"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# The notes API; health and metrics are for operators, not browser apps.
API_PREFIXES = ("/api/",)


def create_app(settings: ResourceSettings | None = None, *, create_tables: bool = False) -> Flask:
    """Build the resource server. Tables are created here only when a test asks
    (``create_tables=True``): every database, the demo's included, is migrated with
    `flask --app resource_server db upgrade` (resource_server/migrations)."""
    settings = settings if settings is not None else ResourceSettings()
    # First, so a missing secret stops start-up before anything is opened.
    client_id, client_secret = settings.introspection_credentials()

    configure_logging(settings.log_level, settings.log_format)
    app = ServiceFlask(__name__, static_folder=None)
    app.extensions[SETTINGS_KEY] = settings
    # First of the hooks: 413 for larger bodies, chunked ones included.
    limit_request_bodies(app, settings.max_request_bytes)

    init_db(app, settings.resource_database_url, settings)
    # `flask --app resource_server db ...`; batch mode so SQLite can ALTER by copying the table.
    Migrate(app, db, directory=str(MIGRATIONS_DIR), render_as_batch=True)
    metrics = ResourceMetrics()
    metrics.init_app(app)
    # Every answer of this service is a user's data or a verdict on a token: no shared or
    # browser cache may keep one (RFC 9111 §5.2.2.5), whatever view or error handler made it.
    request_id.init_app(app).put_on_every_answer(NO_STORE)
    trust_proxies(app, settings.trusted_proxies)
    introspection_client = IntrospectionClient(
        settings.introspection_url,
        client_id,
        client_secret,
        connect_timeout=settings.introspection_connect_timeout,
        read_timeout=settings.introspection_read_timeout,
        total_timeout=settings.introspection_total_timeout,
        max_response_bytes=settings.introspection_max_response_bytes,
        on_call=metrics.on_introspection,
    )
    origins = settings.cors_origins
    Cors(
        applies=lambda path: path.startswith(API_PREFIXES),
        allowed_origins=lambda: origins,
        methods=("GET", "POST", "DELETE"),
        headers=("Authorization", "Content-Type"),
        # A browser app reads why a token was refused, when to retry, and where a note went.
        expose=("WWW-Authenticate", "Retry-After", "Location"),
    ).init_app(app)
    TokenGuard(
        app,
        introspection_client=_with_cache(app, settings, introspection_client, metrics),
        audience=settings.resource_audience,
        realm=settings.resource_realm,
        expected_issuer=settings.expected_issuer,
        retry_after=settings.introspection_retry_after,
        dpop=ResourceDPoP(
            SeenProofs(lambda: db.engine, DPoPProofSeen.__table__), settings.dpop_proof_max_age
        ),
    )
    register_error_handlers(app, settings.introspection_retry_after)
    app.register_blueprint(health_bp)
    app.register_blueprint(api_bp)
    openapi.init_app(app, __name__)
    register_cli(app)

    if create_tables:
        with app.app_context():
            db.create_all()
    return app


def _with_cache(app: Flask, settings: ResourceSettings, client: IntrospectionClient, metrics):
    """The introspection client, behind the revocation-event cache if INTROSPECTION_CACHE_TTL
    turns it on (off by default: every request introspected)."""
    if settings.introspection_cache_ttl <= 0:
        return client
    assert settings.revocation_events_url is not None  # the settings validator requires it
    cache = IntrospectionCache(
        settings.introspection_cache_ttl,
        settings.introspection_cache_negative_ttl,
        settings.introspection_cache_max_entries,
    )
    subscriber = RevocationSubscriber(
        settings.revocation_events_url,
        settings.revocation_events_channel,
        cache,
        issuer=settings.expected_issuer,
        on_event=metrics.on_revocation_event,
    )
    # Started here, in the worker (gunicorn loads the app after forking), never in a master.
    app.extensions[SUBSCRIBER_KEY] = subscriber.start()
    return CachingIntrospector(client, cache, subscriber, on_lookup=metrics.on_cache_lookup)
