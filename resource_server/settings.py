"""Every resource-server setting, its default and its meaning (read from the environment)."""

from __future__ import annotations

from pydantic import Field, model_validator

from shared.guard.bearer import check_realm
from shared.service import demo_seed
from shared.service.cors import parse_origins
from shared.service.secret_file import SecretFile, SecretFileError
from shared.service.settings import ConfigurationError, InInstanceDir, ServiceSettings


class ResourceSettings(ServiceSettings):
    resource_database_url: str = Field(
        default_factory=InInstanceDir("resource.sqlite3", "sqlite:///{}"),
        description="SQLAlchemy URL of the resource server's own database (never the "
        "authorization server's), e.g. `postgresql+psycopg://user@host/db`.",
    )
    resource_audience: str = Field(
        "urn:tessera:notes",
        min_length=1,
        description="This API's audience: a token whose `aud` does not include it gets 401 "
        "invalid_token (RFC 9068 §4).",
    )
    resource_realm: str = Field(
        "tessera", description="The realm of the RFC 6750 `WWW-Authenticate: Bearer` challenge."
    )
    auth_server_url: str = Field(
        "http://127.0.0.1:8000",
        description="Base URL of the authorization server, without a trailing slash.",
    )
    resource_introspection_url: str | None = Field(
        None,
        description="RFC 7662 introspection endpoint. "
        "Unset: AUTH_SERVER_URL + `/oauth/introspect`.",
    )
    resource_expected_issuer: str | None = Field(
        None,
        description="The `iss` every accepted token must have. Unset: AUTH_SERVER_URL.",
    )
    resource_client_id: str | None = Field(
        None,
        description="Client id the resource server authenticates with at the introspection "
        "endpoint. Required unless TESSERA_DEMO is set (then `notes-api`).",
    )
    resource_client_secret: str | None = Field(
        None,
        description="Client secret for RESOURCE_CLIENT_ID. Required unless TESSERA_DEMO is set "
        "(then the demo secret).",
    )
    resource_client_secret_file: str | None = Field(
        None,
        description="File holding the client secret instead of RESOURCE_CLIENT_SECRET (not "
        "both). Read again when it changes, and before a 401 from the introspection endpoint "
        "becomes a 503, so `clients rotate-secret` needs no restart: rewrite the file (write "
        "a temporary file, then rename it over) within the rotation's overlap.",
    )
    introspection_connect_timeout: float = Field(
        1.0, gt=0, description="Seconds to wait for a connection to the introspection endpoint."
    )
    introspection_read_timeout: float = Field(
        2.0, gt=0, description="Seconds to wait for the introspection endpoint to answer."
    )
    introspection_total_timeout: float = Field(
        3.0,
        gt=0,
        description="Most seconds one introspection call may take in all (connecting, a retry "
        "and reading included): an authorization server that trickles its answer gets a 503 "
        "here, whereas the read timeout only bounds the wait for each piece.",
    )
    introspection_max_response_bytes: int = Field(
        64 * 1024,
        ge=1024,
        description="Largest introspection answer read; a larger one is a malformed answer (503).",
    )
    introspection_retry_after: int = Field(
        5,
        ge=1,
        description="Seconds in `Retry-After` on a 503 when the authorization server or the "
        "database cannot answer.",
    )

    introspection_cache_ttl: float = Field(
        0,
        ge=0,
        description="0 (default): every request is introspected. Above 0: seconds an active "
        "token's introspection answer may be reused (never past its `exp`), kept exact by "
        "revocation events; needs REVOCATION_EVENTS_URL (docs/revocation-events.md). Also the "
        "longest a revoked token stays accepted if the authorization server cannot publish.",
    )
    introspection_cache_negative_ttl: float = Field(
        2.0,
        ge=0,
        description="With the cache on: seconds an inactive answer is reused (0: never).",
    )
    introspection_cache_max_entries: int = Field(
        10000, ge=1, description="With the cache on: most answers kept per worker (LRU)."
    )
    cors_allowed_origins: str = Field(
        "",
        description="Origins (space or comma separated, e.g. `https://app.example.com`) whose "
        "pages may call the API from the browser (CORS, bearer tokens only, no cookies). "
        "Default: none.",
    )

    @model_validator(mode="after")
    def _check(self) -> ResourceSettings:
        if self.introspection_cache_ttl > 0 and not self.revocation_events_url:
            raise ValueError(
                "INTROSPECTION_CACHE_TTL needs REVOCATION_EVENTS_URL: without revocation events "
                "a cached answer would outlive its token's revocation"
            )
        if self.auth_server_url.endswith("/"):
            raise ValueError("AUTH_SERVER_URL must not end with '/'")
        try:
            check_realm(self.resource_realm)
        except ValueError as exc:
            raise ValueError(f"RESOURCE_REALM: {exc}") from None
        try:
            parse_origins(self.cors_allowed_origins)
        except ValueError as exc:
            raise ValueError(f"CORS_ALLOWED_ORIGINS: {exc}") from None
        return self

    @property
    def cors_origins(self) -> frozenset[str]:
        return parse_origins(self.cors_allowed_origins)

    @property
    def introspection_url(self) -> str:
        return self.resource_introspection_url or f"{self.auth_server_url}/oauth/introspect"

    @property
    def expected_issuer(self) -> str:
        return self.resource_expected_issuer or self.auth_server_url

    def introspection_credentials(self) -> tuple[str, str | SecretFile]:
        """(client_id, client_secret) for introspection; ConfigurationError if they are missing.

        The secret is a SecretFile, followed as it changes, with RESOURCE_CLIENT_SECRET_FILE.
        Demo mode fills in the demo client. Anywhere else a missing value stops start-up: a
        literal fallback would either fail every request or, worse, match a demo client that
        was left registered in production.
        """
        client_id = self.resource_client_id or (
            demo_seed.NOTES_API[0] if self.tessera_demo else None
        )
        secret: str | SecretFile | None = self.resource_client_secret
        if self.resource_client_secret_file:
            if secret:
                raise ConfigurationError(
                    "set RESOURCE_CLIENT_SECRET or RESOURCE_CLIENT_SECRET_FILE, not both"
                )
            try:
                secret = SecretFile(self.resource_client_secret_file)
            except (OSError, SecretFileError) as exc:
                raise ConfigurationError(f"RESOURCE_CLIENT_SECRET_FILE: {exc}") from exc
        secret = secret or (demo_seed.NOTES_API[1] if self.tessera_demo else None)
        missing = [
            name
            for name, value in (
                ("RESOURCE_CLIENT_ID", client_id),
                ("RESOURCE_CLIENT_SECRET", secret),
            )
            if not value
        ]
        if missing:
            raise ConfigurationError(
                f"{' and '.join(missing)} must be set: the resource server authenticates with "
                "them at the introspection endpoint (TESSERA_DEMO=1 fills in demo values for "
                "local demos only)"
            )
        assert client_id is not None and secret is not None
        return client_id, secret
