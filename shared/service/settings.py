"""Typed settings read from the environment, one class per service.

Every field's environment variable is its name in upper case (``access_token_ttl`` is
``ACCESS_TOKEN_TTL``); its default and meaning sit next to it, and ``env_reference`` turns them
into the tables of docs/settings.md. Settings are read once, by the app factory, and travel
on ``app.extensions``; no other module of the services reads ``os.environ``. The one exception
is gunicorn.conf.py, which reads its own ``GUNICORN_*`` variables before any app exists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings, SettingsConfigDict

# The checkout, for the tests and scripts that run from it; no default of a setting uses it
# (an installed package must never write next to its code in site-packages).
PROJECT_ROOT = Path(__file__).resolve().parents[2]
# The embedded default keeps its SQLite files and generated secrets in INSTANCE_DIR, by default
# this folder of the working directory: `make run` and the CLI, run from the checkout, share it.
DEFAULT_INSTANCE_DIR = "instance"


class InInstanceDir:
    """The default of a setting that names a file in INSTANCE_DIR (a pydantic default_factory
    that sees the fields validated before it); documented as `$INSTANCE_DIR/<name>`."""

    def __init__(self, name: str, template: str = "{}") -> None:
        self.name = name
        self.template = template

    def __call__(self, data: dict[str, Any]) -> str:
        return self.template.format(Path(data["instance_dir"]) / self.name)

    def __str__(self) -> str:
        return self.template.format(f"$INSTANCE_DIR/{self.name}")


class ConfigurationError(RuntimeError):
    """A setting is missing or contradicts another; raised at start-up, never mid-request."""


class ServiceSettings(BaseSettings):
    """Settings every Tessera service shares."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, case_sensitive=False)

    instance_dir: str = Field(
        DEFAULT_INSTANCE_DIR,
        description="Folder of the embedded default's SQLite files and generated secrets (the "
        "defaults below that start with `$INSTANCE_DIR`); a relative path is taken from the "
        "working directory. Created private (0700) when first needed.",
    )
    tessera_demo: bool = Field(
        False,
        description="Demo mode for `make run`: seeds the demo user and clients and fills in demo "
        "secrets. Never set it in production.",
    )
    log_level: str = Field("INFO", description="Python log level of the service's logger.")
    log_format: str = Field("json", description="`json` (one object per line) or `text`.")
    db_pool_size: int = Field(10, ge=1, description="PostgreSQL connection pool size per process.")
    db_max_overflow: int = Field(5, ge=0, description="Connections allowed above the pool size.")
    db_pool_timeout: float = Field(
        5.0, gt=0, description="Seconds to wait for a pooled connection before answering 503."
    )
    db_statement_timeout_ms: int = Field(
        5000, ge=0, description="PostgreSQL statement timeout, so a stuck database fails fast."
    )
    sqlite_busy_timeout_ms: int = Field(
        15000, ge=0, description="How long a SQLite writer waits for the lock held by another."
    )
    trusted_proxies: int = Field(
        0,
        ge=0,
        le=5,
        description="Reverse proxies in front of the service whose X-Forwarded-For and "
        "X-Forwarded-Proto are trusted (1 behind the compose proxy). The client IP feeds login "
        "throttling and the audit log, so never set it higher than the real number of hops.",
    )
    max_request_bytes: int = Field(
        64 * 1024, ge=1024, description="Largest request body accepted; larger ones get 413."
    )
    metrics_bind: str | None = Field(
        None,
        pattern=r"^$|^[^\s:]+:[0-9]{1,5}$|^\[[0-9A-Fa-f:.]+\]:[0-9]{1,5}$",
        description="`host:port` of the separate listener that serves Prometheus `/metrics` "
        "under gunicorn (every worker's samples, aggregated by the master); unset: none. The "
        "service's own port answers 404 for `/metrics`. Keep it off the public network: "
        "`make run` uses 127.0.0.1:9100 (AS) and :9101 (notes API), the image 0.0.0.0:9100, "
        "which compose does not publish.",
    )
    dpop_proof_max_age: int = Field(
        60,
        ge=5,
        le=600,
        description="Seconds a DPoP proof (RFC 9449) is accepted after its `iat` (plus 5 s of "
        "clock skew either way); its `jti` is remembered in the service's database this long.",
    )

    revocation_events_url: str | None = Field(
        None,
        pattern=r"^$|^(redis|rediss|unix)://",
        description="Redis URL of the revocation-event channel (docs/revocation-events.md). "
        "Authorization server: set, it publishes an event for every revocation. Resource "
        "server: required when INTROSPECTION_CACHE_TTL is above 0. Unset: no events.",
    )
    revocation_events_channel: str = Field(
        "tessera:revocation-events",
        min_length=1,
        description="Redis pub/sub channel of the revocation events; the same on every service.",
    )

    @classmethod
    def env_reference(cls) -> list[tuple[str, str, str]]:
        """(ENV_NAME, default, description) for every setting, for docs and their drift test."""
        rows = []
        for name, field in cls.model_fields.items():
            default: Any = field.default
            if isinstance(field.default_factory, InInstanceDir):
                shown = str(field.default_factory)
            elif default is PydanticUndefined:
                shown = "(required)"
            else:
                shown = _show_default(default)
            rows.append((name.upper(), shown, field.description or ""))
        return rows


def _show_default(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)
