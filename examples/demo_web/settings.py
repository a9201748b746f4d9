"""The demo web app's settings, read from the environment once (by create_app).

Each field's variable is its name in upper case (``demo_web_issuer`` is ``DEMO_WEB_ISSUER``);
docs/demo-web.md lists them all (tests/demo_web/test_settings.py keeps it honest).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, model_validator
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.service import demo_seed
from shared.service.settings import DEFAULT_INSTANCE_DIR


class DemoWebSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True, case_sensitive=False)

    demo_web_url: str = Field(
        "http://127.0.0.1:8002",
        description="The app's own public URL (no trailing slash); its redirect URI is this "
        "plus `/callback`. Over https the session cookie is `__Host-` prefixed and Secure.",
    )
    demo_web_issuer: str = Field(
        "http://127.0.0.1:8000",
        description="The authorization server's issuer: where the browser signs in, and the "
        "`iss` every authorization response must carry (RFC 9207).",
    )
    demo_web_auth_server_url: str | None = Field(
        None,
        description="Where the app itself reaches the authorization server (metadata, token, "
        "revocation), when that differs from the issuer (compose's internal network). Unset: "
        "DEMO_WEB_ISSUER.",
    )
    demo_web_notes_url: str = Field(
        "http://127.0.0.1:8001/api",
        description="Base URL of the notes API: the app calls its `/notes` and `/me`.",
    )
    demo_web_client_id: str = Field(demo_seed.WEB[0], description="The app's client_id.")
    demo_web_client_secret: str = Field(
        demo_seed.WEB[1],
        description="The app's client secret (the demo seed's; replace it outside demos).",
    )
    demo_web_scope: str = Field(
        " ".join(demo_seed.SCOPES), description="The scope the app asks for."
    )
    demo_web_session_db: str = Field(
        f"{DEFAULT_INSTANCE_DIR}/demo-web-sessions.sqlite3",
        description="SQLite file of the server-side sessions (the tokens live here, never in "
        "the browser); a relative path is taken from the working directory.",
    )
    demo_web_session_ttl: int = Field(
        8 * 3600, ge=60, description="Seconds a session lives without being used."
    )
    demo_web_insecure_transport: bool = Field(
        False,
        description="Allow plain http to a non-loopback authorization server or notes API "
        "(a private container network only).",
    )

    @model_validator(mode="after")
    def _check(self) -> DemoWebSettings:
        for name in ("demo_web_url", "demo_web_issuer", "demo_web_notes_url"):
            parts = urlsplit(getattr(self, name))
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"{name.upper()} must be an http(s) URL")
        return self

    @property
    def redirect_uri(self) -> str:
        return self.demo_web_url.rstrip("/") + "/callback"

    @property
    def secure_cookies(self) -> bool:
        return self.demo_web_url.startswith("https://")

    @property
    def backchannel_url(self) -> str:
        return (self.demo_web_auth_server_url or self.demo_web_issuer).rstrip("/")

    @classmethod
    def env_reference(cls) -> list[tuple[str, str, str]]:
        rows = []
        for name, field in cls.model_fields.items():
            default: Any = field.default
            shown = "(required)" if default is PydanticUndefined else str(default)
            rows.append((name.upper(), shown, field.description or ""))
        return rows
