"""The embedded demo's seed data (TESSERA_DEMO=1: `make run`, docker compose), defined once.

`flask --app auth_server demo setup` registers these; the notes API's demo mode and the demo web
app default to their credentials; scripts/run-demo prints ``summary()``; the tests log in as the
same user with the same first-party client. Every secret here is public: none of it may exist
outside a demo.
"""

from __future__ import annotations

from typing import Any

NOTES_AUDIENCE = "urn:tessera:notes"
SCOPES = ("profile", "notes:read", "notes:write")
# The demo web app (examples/demo_web) and the browser demo both come back here.
REDIRECT_URI = "http://127.0.0.1:8002/callback"

USER = ("alice", "wonderland")
# (client_id, secret) of each confidential client; demo-spa is public.
APP = ("demo-app", "demo-app-secret")
SPA_ID = "demo-spa"
WEB = ("demo-web", "demo-web-secret")
NOTES_API = ("notes-api", "notes-api-secret")

# Keyword arguments of auth_server.clients.register_client.
CLIENTS: list[dict[str, Any]] = [
    dict(
        client_id=APP[0],
        secret=APP[1],
        name="Demo first-party app",
        grant_types=["password", "refresh_token", "client_credentials"],
        scopes=list(SCOPES),
        audiences=[NOTES_AUDIENCE],
    ),
    dict(
        client_id=SPA_ID,
        name="Demo browser app",
        client_type="public",
        grant_types=["authorization_code", "refresh_token"],
        scopes=list(SCOPES),
        audiences=[NOTES_AUDIENCE],
        redirect_uris=[REDIRECT_URI],
    ),
    dict(
        # The demo web app (examples/demo_web, on 127.0.0.1:8002): a backend-for-frontend.
        client_id=WEB[0],
        secret=WEB[1],
        name="Tessera Notes",
        grant_types=["authorization_code", "refresh_token"],
        scopes=list(SCOPES),
        audiences=[NOTES_AUDIENCE],
        redirect_uris=[REDIRECT_URI],
    ),
    dict(
        client_id=NOTES_API[0],
        secret=NOTES_API[1],
        name="Notes resource server",
        grant_types=[],
        scopes=[],
        # What it serves: introspection tells it about tokens for this audience only.
        audiences=[NOTES_AUDIENCE],
        can_introspect=True,
    ),
]


def summary() -> str:
    """The demo's accounts, one per line, as `make run` prints them."""
    return "\n".join(
        [
            f"  demo user             {USER[0]} / {USER[1]}",
            f"  demo client           {APP[0]} / {APP[1]}   "
            "(password, refresh_token, client_credentials)",
            f"  browser client        {SPA_ID} (public, PKCE)      redirect URI {REDIRECT_URI}",
            f"  web app client        {WEB[0]} / {WEB[1]}   "
            "(authorization code + PKCE, the demo web app)",
            f"  resource server       {NOTES_API[0]} / {NOTES_API[1]} (introspection)",
        ]
    )


if __name__ == "__main__":
    print(summary())
