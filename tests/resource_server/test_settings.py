"""ResourceSettings and create_app start-up checks (no AS involved)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from sqlalchemy import inspect

from resource_server import create_app
from resource_server.db import db
from resource_server.settings import ResourceSettings
from shared.guard.protect import EXTENSION_KEY
from shared.service.settings import ConfigurationError

# Every variable ResourceSettings reads, so the ambient environment cannot leak into a test.
ENV_NAMES = [name for name, _, _ in ResourceSettings.env_reference()]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def database_url(make_database_url) -> str:
    return make_database_url("resource")


@pytest.fixture
def dispose():
    apps = []
    yield apps.append
    for app in apps:
        with app.app_context():
            db.engine.dispose()
        app.extensions[EXTENSION_KEY].introspection_client.close()


def test_missing_client_secret_outside_demo_fails_fast(database_url):
    """Without RESOURCE_CLIENT_SECRET and not in demo mode, create_app refuses to start."""
    settings = ResourceSettings(resource_database_url=database_url, resource_client_id="rs")
    with pytest.raises(ConfigurationError, match="RESOURCE_CLIENT_SECRET"):
        create_app(settings)


def test_missing_client_id_outside_demo_fails_fast(database_url):
    """Without RESOURCE_CLIENT_ID and not in demo mode, create_app refuses to start."""
    settings = ResourceSettings(resource_database_url=database_url, resource_client_secret="s")
    with pytest.raises(ConfigurationError, match="RESOURCE_CLIENT_ID"):
        create_app(settings)


def test_empty_client_secret_counts_as_missing(monkeypatch, database_url):
    """RESOURCE_CLIENT_SECRET= (empty) is as missing as unset."""
    monkeypatch.setenv("RESOURCE_CLIENT_ID", "rs")
    monkeypatch.setenv("RESOURCE_CLIENT_SECRET", "")
    monkeypatch.setenv("RESOURCE_DATABASE_URL", database_url)
    with pytest.raises(ConfigurationError, match="RESOURCE_CLIENT_SECRET"):
        create_app()


def test_demo_mode_fills_in_demo_client_credentials(database_url, dispose):
    """TESSERA_DEMO supplies notes-api / notes-api-secret; the schema is still the migrations'
    (make run runs `db upgrade` first), so no table is created here."""
    settings = ResourceSettings(tessera_demo=True, resource_database_url=database_url)
    assert settings.introspection_credentials() == ("notes-api", "notes-api-secret")
    app = create_app(settings)
    dispose(app)
    assert app.extensions[EXTENSION_KEY].introspection_client.client_id == "notes-api"
    with app.app_context():
        assert not inspect(db.engine).has_table("notes")


def test_tables_are_not_created_outside_demo_unless_asked(database_url, dispose):
    """Without create_tables=True the schema is left alone (the migrations own it)."""
    settings = ResourceSettings(
        resource_database_url=database_url, resource_client_id="rs", resource_client_secret="s"
    )
    app = create_app(settings)
    dispose(app)
    with app.app_context():
        assert not inspect(db.engine).has_table("notes")


def test_settings_are_read_from_environment(monkeypatch, database_url, dispose):
    """Each field is read from its upper-case variable and lands on app.extensions."""
    monkeypatch.setenv("RESOURCE_DATABASE_URL", database_url)
    monkeypatch.setenv("RESOURCE_CLIENT_ID", "rs-env")
    monkeypatch.setenv("RESOURCE_CLIENT_SECRET", "secret-env")
    monkeypatch.setenv("RESOURCE_AUDIENCE", "urn:other")
    monkeypatch.setenv("INTROSPECTION_READ_TIMEOUT", "0.75")
    monkeypatch.setenv("INTROSPECTION_TOTAL_TIMEOUT", "1.25")
    monkeypatch.setenv("INTROSPECTION_MAX_RESPONSE_BYTES", "4096")
    monkeypatch.setenv("MAX_REQUEST_BYTES", "2048")
    app = create_app()
    dispose(app)
    settings = app.extensions["tessera_settings"]
    assert isinstance(settings, ResourceSettings)
    assert settings.resource_client_id == "rs-env"
    assert app.config["MAX_CONTENT_LENGTH"] == 2048
    guard = app.extensions[EXTENSION_KEY]
    assert guard.audience == "urn:other"
    assert guard.introspection_client.timeout == (1.0, 0.75)
    assert guard.introspection_client.total_timeout == 1.25
    assert guard.introspection_client.max_response_bytes == 4096


def test_introspection_url_and_issuer_default_from_auth_server_url():
    """Unset, the endpoint is AUTH_SERVER_URL/oauth/introspect and the issuer AUTH_SERVER_URL."""
    settings = ResourceSettings(auth_server_url="https://auth.example")
    assert settings.introspection_url == "https://auth.example/oauth/introspect"
    assert settings.expected_issuer == "https://auth.example"
    explicit = ResourceSettings(
        auth_server_url="https://auth.example",
        resource_introspection_url="http://10.0.0.5/introspect",
        resource_expected_issuer="https://issuer.example",
    )
    assert explicit.introspection_url == "http://10.0.0.5/introspect"
    assert explicit.expected_issuer == "https://issuer.example"


def test_defaults_match_the_documented_values():
    """The defaults the brief and README promise."""
    settings = ResourceSettings()
    assert settings.resource_audience == "urn:tessera:notes"
    assert settings.resource_realm == "tessera"
    assert settings.auth_server_url == "http://127.0.0.1:8000"
    assert settings.resource_database_url.endswith("resource.sqlite3")
    assert (settings.introspection_connect_timeout, settings.introspection_read_timeout) == (1, 2)
    assert settings.introspection_retry_after == 5
    assert settings.introspection_total_timeout == 3
    assert settings.introspection_max_response_bytes == 65536


@pytest.mark.parametrize(
    "overrides",
    [
        {"auth_server_url": "http://auth.example/"},
        {"resource_realm": 'bad"realm'},
        {"resource_audience": ""},
        {"introspection_read_timeout": 0},
        {"introspection_total_timeout": 0},
        {"introspection_max_response_bytes": 100},
    ],
)
def test_invalid_settings_are_refused(overrides):
    """Inconsistent values fail when the settings are read, not mid-request."""
    with pytest.raises(ValidationError):
        ResourceSettings(**overrides)


def test_every_setting_is_documented():
    """Every field has a description, for the README's environment table."""
    for name, _, description in ResourceSettings.env_reference():
        assert description, name


def test_the_secret_can_come_from_a_file(tmp_path, monkeypatch):
    path = tmp_path / "secret"
    path.write_text("from-the-file\n")
    monkeypatch.setenv("RESOURCE_CLIENT_ID", "rs")
    monkeypatch.setenv("RESOURCE_CLIENT_SECRET_FILE", str(path))
    client_id, secret = ResourceSettings().introspection_credentials()
    assert client_id == "rs"
    assert secret.current() == "from-the-file"


def test_a_secret_and_a_secret_file_together_are_refused(tmp_path, monkeypatch):
    path = tmp_path / "secret"
    path.write_text("from-the-file\n")
    monkeypatch.setenv("RESOURCE_CLIENT_ID", "rs")
    monkeypatch.setenv("RESOURCE_CLIENT_SECRET", "literal")
    monkeypatch.setenv("RESOURCE_CLIENT_SECRET_FILE", str(path))
    with pytest.raises(ConfigurationError, match="not both"):
        ResourceSettings().introspection_credentials()


@pytest.mark.parametrize("content", [None, "", "  \n"], ids=["missing", "empty", "blank"])
def test_a_missing_or_empty_secret_file_stops_start_up(tmp_path, monkeypatch, content):
    path = tmp_path / "secret"
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv("RESOURCE_CLIENT_ID", "rs")
    monkeypatch.setenv("RESOURCE_CLIENT_SECRET_FILE", str(path))
    with pytest.raises(ConfigurationError, match="RESOURCE_CLIENT_SECRET_FILE"):
        ResourceSettings().introspection_credentials()
