"""Every authorization-server setting, its default and its meaning (read from the environment)."""

from __future__ import annotations

from typing import Literal

from authlib.common.security import is_secure_transport
from pydantic import Field, model_validator

from shared.service.settings import InInstanceDir, ServiceSettings

SUPPORTED_SIGNING_ALGS = ("ES256", "RS256", "EdDSA")


class AuthSettings(ServiceSettings):
    auth_issuer: str = Field(
        "http://127.0.0.1:8000",
        description="The issuer identifier (RFC 8414 `issuer`, JWT `iss`): the public base URL of "
        "the authorization server, without a trailing slash.",
    )
    auth_allow_http_issuer: bool = Field(
        False,
        description="Development only: accept an http:// issuer on a host that is not "
        "loopback (e.g. a demo on a LAN). Production terminates TLS in front and uses https.",
    )
    auth_database_url: str = Field(
        default_factory=InInstanceDir("auth.sqlite3", "sqlite:///{}"),
        description="SQLAlchemy URL of the authorization server's own database, e.g. "
        "`postgresql+psycopg://user@host/db`.",
    )
    access_token_ttl: int = Field(300, ge=1, description="Access token lifetime in seconds.")
    refresh_token_idle_ttl: int = Field(
        14 * 86400, ge=1, description="A refresh token family dies after this many idle seconds."
    )
    refresh_token_max_ttl: int = Field(
        30 * 86400, ge=1, description="Absolute lifetime of a refresh token family (one login)."
    )
    refresh_activity_interval: int = Field(
        60,
        ge=1,
        description="Sliding expiration: a validated use of a login's access token "
        "(introspection answering active) counts as activity that keeps the login from idling "
        "out (REFRESH_TOKEN_IDLE_TTL), recorded at most once per login per this many seconds.",
    )
    refresh_reuse_grace: int = Field(
        0,
        ge=0,
        le=300,
        description="Seconds during which a just-rotated refresh token gets the same successor "
        "back instead of counting as reuse (0: any second use is reuse).",
    )
    signing_alg: str = Field("ES256", description="JWT signing algorithm: ES256, RS256 or EdDSA.")
    signing_key_rotation_days: int = Field(
        0, ge=0, description="Rotate the signing key automatically after this many days (0: off)."
    )
    key_cache_seconds: float = Field(
        5.0,
        gt=0,
        description="How often each worker re-reads the signing keys, so a rotation reaches every "
        "worker within this many seconds without a restart.",
    )
    auth_key_encryption_key: str | None = Field(
        None,
        description="Fernet key(s), comma-separated (the first encrypts), that encrypt private "
        "signing keys at rest. Unset: read AUTH_KEY_ENCRYPTION_KEY_FILE.",
    )
    auth_key_encryption_key_file: str = Field(
        default_factory=InInstanceDir("key-encryption.key"),
        description="File holding the Fernet key when AUTH_KEY_ENCRYPTION_KEY is unset; demo "
        "set-up generates it. If neither exists, keys are stored unencrypted (with a warning).",
    )
    revocation_events_publish_timeout: float = Field(
        0.5,
        gt=0,
        description="Most seconds a revoking call waits for Redis to take its revocation event; "
        "on failure it still answers (logged and counted, docs/revocation-events.md).",
    )
    client_cache_seconds: float = Field(
        5.0,
        ge=0,
        description="How long each worker reuses a client's registration (secret hash, grants, "
        "scopes) before reading it again: saves a query on every introspection. A disabled "
        "client or changed scopes take effect within this time. 0: read every time.",
    )
    client_credentials_tokens: Literal["self-contained", "stored"] = Field(
        "self-contained",
        description="How client_credentials access tokens are kept. self-contained: not "
        "stored; introspection verifies the JWT's signature and reads only what can end it "
        "early (its client disabled or its epoch moved, a revocation by jti), and issuance "
        "writes nothing before answering (its audit row follows within 50 ms). stored: a row "
        "per token, written before the answer (docs/architecture.md#token-issuance).",
    )
    introspection_memory: bool = Field(
        True,
        description="Each worker remembers the access tokens it has introspected, so asking "
        "again about a token reads no database. Every committed revocation makes every worker "
        "of this host forget at once, and workers on other hosts within "
        "INTROSPECTION_MEMORY_POLL_MS (docs/architecture.md#introspection-memory). false: every "
        "introspection reads the database.",
    )
    introspection_memory_poll_ms: int = Field(
        500,
        ge=1,
        description="How often each worker reads the database's revocation generation: the "
        "bound on how long a revocation made on another host (another instance, or the CLI in "
        "another container) can leave a remembered token active here.",
    )
    introspection_memory_dir: str = Field(
        "",
        description="Folder of the host's revocation-generation file, which every process of "
        "this host using this database maps (workers, instances, the CLI). Empty: /dev/shm, or "
        "the temporary folder where there is none.",
    )
    password_min_length: int = Field(10, ge=8, description="Minimum length of a new password.")
    password_hash_time_cost: int = Field(3, ge=1, description="Argon2id iterations.")
    password_hash_memory_kib: int = Field(65536, ge=8, description="Argon2id memory in KiB.")
    password_hash_parallelism: int = Field(4, ge=1, description="Argon2id lanes.")
    ratelimit_storage_uri: str = Field(
        "database",
        description="Where the login-throttle counters live: `database` (the authorization "
        "server's own database, table login_attempts: every worker and replica shares them) or "
        "a `redis://host:6379/0` URL.",
    )
    login_failures_per_username_and_ip: str = Field(
        "10 per 5 minutes",
        description="Password checks (password grant, login page, account page, "
        "/account/password) that may fail for one username from one client address per window "
        "before 429. Counted before the hash; a correct password does not count.",
    )
    login_failures_per_ip: str = Field(
        "100 per 5 minutes",
        description="Password checks that may fail from one client address, any username, per "
        "window before 429.",
    )
    login_failures_per_username: str = Field(
        "100 per hour",
        description="Password checks that may fail for one username, from every address "
        "together, per window. Past it only addresses with no failure for that username in "
        "the window may still try (so the real user gets in): each other address gets 429.",
    )
    password_hash_concurrency: int = Field(
        1,
        ge=1,
        description="Argon2 hashes one worker process runs at once (each uses "
        "PASSWORD_HASH_PARALLELISM threads); a password check beyond it is refused at once "
        "with 503 and Retry-After instead of slowing every other request.",
    )
    password_hash_niceness: int = Field(
        10,
        ge=0,
        le=19,
        description="Linux nice value of the threads that hash passwords (0: as the worker). "
        "Hashing then takes only CPU that requests such as introspection leave idle.",
    )
    authorization_code_ttl: int = Field(
        60,
        ge=1,
        le=600,
        description="Lifetime in seconds of an authorization code (RFC 6749 §4.1.2: short; "
        "10 minutes at most).",
    )
    auth_session_secret: str | None = Field(
        None,
        description="Secret (at least 32 characters) that signs the browser cookie of the login "
        "page (its CSRF token); every worker and replica needs the same one. Make one with "
        "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`. Changing it only "
        "invalidates login forms already open. Required, unless AUTH_SESSION_SECRET_FILE exists "
        "or TESSERA_DEMO is set.",
    )
    auth_session_secret_file: str = Field(
        default_factory=InInstanceDir("session-secret.key"),
        description="File read for the session secret when AUTH_SESSION_SECRET is unset; demo "
        "mode generates it.",
    )
    password_grant_enabled: bool = Field(
        True,
        description="Serve the resource owner password credentials grant (first-party apps "
        "only). RFC 9700 §2.4: it MUST NOT be used; set 0 once every app uses the authorization "
        "code flow: the token endpoint then answers `unsupported_grant_type` and the metadata no "
        "longer lists it.",
    )
    dpop_nonce_required: bool = Field(
        False,
        description="Require a server nonce in every DPoP proof at the token endpoint (RFC 9449 "
        "§8): a proof without the current one gets `use_dpop_nonce` and a `DPoP-Nonce` header. "
        "Nonces derive from the session secret, so every worker and replica agrees on them.",
    )
    audit_retention_days: int = Field(
        90, ge=1, description="`tokens purge` deletes audit events older than this."
    )

    @property
    def key_retirement_seconds(self) -> int:
        """How long a retired key stays published: every token it signed expires by then, even
        one signed by a worker that had not yet re-read the keys."""
        return self.access_token_ttl + int(self.key_cache_seconds) + 60

    @model_validator(mode="after")
    def _check(self) -> AuthSettings:
        if self.signing_alg not in SUPPORTED_SIGNING_ALGS:
            raise ValueError(f"SIGNING_ALG must be one of {', '.join(SUPPORTED_SIGNING_ALGS)}")
        if self.auth_issuer.endswith("/"):
            raise ValueError("AUTH_ISSUER must not end with '/'")
        # RFC 6749 §3.1/§3.2 require TLS for the endpoints; RFC 8414 §2 an https issuer.
        if not is_secure_transport(self.auth_issuer) and not self.auth_allow_http_issuer:
            raise ValueError(
                "AUTH_ISSUER must be https (TLS in front of the server) or http on a loopback "
                "host; for a development network set AUTH_ALLOW_HTTP_ISSUER=1"
            )
        from auth_server.throttle import DATABASE_STORAGE, Limit

        for name in (
            "login_failures_per_username_and_ip",
            "login_failures_per_ip",
            "login_failures_per_username",
        ):
            Limit.parse(getattr(self, name))
        if self.ratelimit_storage_uri != DATABASE_STORAGE and not (
            self.ratelimit_storage_uri.startswith(("redis://", "rediss://", "unix://"))
        ):
            raise ValueError(
                "RATELIMIT_STORAGE_URI must be `database` or a redis:// URL (`memory://` counted "
                "per process, so every worker allowed the limit again)"
            )
        if self.refresh_token_idle_ttl > self.refresh_token_max_ttl:
            raise ValueError("REFRESH_TOKEN_IDLE_TTL must not exceed REFRESH_TOKEN_MAX_TTL")
        return self
