"""Benchmark the token life cycle's hot paths under gunicorn, as deployed.

    python bench/run.py [--seconds 8] [--database sqlite|postgresql] [--workers 2]

Starts the authorization server and the notes API with gunicorn.conf.py (real processes,
real sockets, SQLite files or fresh PostgreSQL schemas), then measures each scenario with the
same load generator. Every number is also given as a ratio against a baseline measured in the
same run (the same server answering /healthz), because absolute numbers depend on the machine.
Results go to bench/results/<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

import resource_server  # noqa: E402
from auth_server import create_app as create_auth_app  # noqa: E402
from auth_server.clients import register_client  # noqa: E402
from auth_server.db import db  # noqa: E402
from auth_server.settings import AuthSettings  # noqa: E402
from bench.load import Request, run  # noqa: E402
from resource_server.settings import ResourceSettings  # noqa: E402
from shared.protocol.basic_auth import basic_credentials_header  # noqa: E402
from tests.processes import GunicornService, free_port, settings_env  # noqa: E402

USER = ("bench-user", "bench-password-1")
APP = ("bench-app", "bench-app-secret")
API = ("bench-api", "bench-api-secret")
AUDIENCE = "urn:tessera:notes"
FORM = ("Content-Type", "application/x-www-form-urlencoded")


def database_urls(kind: str, workdir: Path, pg_url: str) -> tuple[str, str, list[str]]:
    if kind == "sqlite":
        return f"sqlite:///{workdir}/auth.sqlite3", f"sqlite:///{workdir}/notes.sqlite3", []
    schemas = [f"bench_{name}_{uuid.uuid4().hex[:8]}" for name in ("auth", "notes")]
    with create_engine(pg_url).begin() as conn:
        for schema in schemas:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    urls = [
        make_url(pg_url)
        .update_query_dict({"options": f"-csearch_path={s}"})
        .render_as_string(hide_password=False)
        for s in schemas
    ]
    return urls[0], urls[1], schemas


def bench_auth_settings(port: int, database_url: str, workdir: Path, **overrides) -> AuthSettings:
    """The authorization server of a benchmark: its own issuer, database and secrets."""
    return AuthSettings(
        auth_issuer=f"http://127.0.0.1:{port}",
        auth_database_url=database_url,
        auth_key_encryption_key_file=str(workdir / "kek"),
        auth_session_secret=secrets.token_urlsafe(32),
        log_level="WARNING",
        **overrides,
    )


def seed_auth_server(
    settings: AuthSettings, app_grant_types: list[str], app_scopes: list[str]
) -> None:
    """Create the tables, the benchmark's user, its app client and its resource server."""
    app = create_auth_app(settings, create_tables=True)
    with app.app_context():
        app.extensions["tessera"].accounts().create_user(*USER)
        register_client(
            db.session,
            APP[0],
            secret=APP[1],
            audiences=[AUDIENCE],
            grant_types=app_grant_types,
            scopes=app_scopes,
        )
        register_client(
            db.session,
            API[0],
            secret=API[1],
            grant_types=[],
            scopes=[],
            audiences=[AUDIENCE],  # what it serves: introspection answers only about these
            can_introspect=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--processes", type=int, default=2, help="load generator processes")
    parser.add_argument("--connections", type=int, default=8, help="connections per process")
    args = parser.parse_args()

    scratch = tempfile.TemporaryDirectory(prefix="tessera-bench-")
    workdir = Path(scratch.name)
    auth_url_db, notes_url_db, schemas = database_urls(args.database, workdir, args.postgres_url)
    auth_port = free_port()
    auth_settings = bench_auth_settings(auth_port, auth_url_db, workdir)
    seed_auth_server(
        auth_settings,
        app_grant_types=["password", "refresh_token", "client_credentials"],
        app_scopes=["profile", "notes:read", "notes:write"],
    )
    notes_settings = ResourceSettings(
        resource_database_url=notes_url_db,
        auth_server_url=auth_settings.auth_issuer,
        resource_client_id=API[0],
        resource_client_secret=API[1],
        log_level="WARNING",
    )
    resource_server.create_app(notes_settings, create_tables=True)
    quiet = {"GUNICORN_LOG_LEVEL": "warning"}
    auth = GunicornService(
        "auth_server",
        {**settings_env(auth_settings), **quiet},
        workers=args.workers,
        port=auth_port,
    ).start()
    notes = GunicornService(
        "resource_server", {**settings_env(notes_settings), **quiet}, workers=args.workers
    ).start()
    try:
        token = requests.post(
            f"{auth.url}/oauth/token",
            auth=APP,
            timeout=10,
            data={"grant_type": "password", "username": USER[0], "password": USER[1]},
        ).json()
        app_auth = ("Authorization", basic_credentials_header(*APP))
        api_auth = ("Authorization", basic_credentials_header(*API))
        bearer = ("Authorization", f"Bearer {token['access_token']}")
        scenarios = {
            "rs_healthz (baseline)": Request("GET", f"{notes.url}/healthz"),
            "rs_protected_request": Request("GET", f"{notes.url}/api/me", headers=(bearer,)),
            "as_healthz (baseline)": Request("GET", f"{auth.url}/healthz"),
            "as_introspect": Request(
                "POST",
                f"{auth.url}/oauth/introspect",
                headers=(api_auth, FORM),
                body=urlencode({"token": token["access_token"]}).encode(),
            ),
            "as_client_credentials": Request(
                "POST",
                f"{auth.url}/oauth/token",
                headers=(app_auth, FORM),
                body=b"grant_type=client_credentials",
            ),
            "as_password_grant (Argon2id default)": Request(
                "POST",
                f"{auth.url}/oauth/token",
                headers=(app_auth, FORM),
                body=urlencode(
                    {"grant_type": "password", "username": USER[0], "password": USER[1]}
                ).encode(),
            ),
        }
        results = {}
        for name, request in scenarios.items():
            result = run(
                request,
                processes=args.processes,
                connections=args.connections,
                seconds=args.seconds,
            )
            results[name] = result
            print(
                f"{name:40s} {result.rate:8.1f} req/s  p50 {result.percentile(50):6.1f} ms"
                f"  p99 {result.percentile(99):6.1f} ms  statuses {result.statuses}"
                f"  errors {result.errors}",
                flush=True,
            )
    finally:
        notes.stop()
        auth.stop()
        if schemas:
            with create_engine(args.postgres_url).begin() as conn:
                for schema in schemas:
                    conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        scratch.cleanup()

    rs_base = results["rs_healthz (baseline)"].rate
    as_base = results["as_healthz (baseline)"].rate
    ratios = {
        "rs_protected_request / rs_healthz": results["rs_protected_request"].rate / rs_base,
        "as_introspect / as_healthz": results["as_introspect"].rate / as_base,
        "as_client_credentials / as_healthz": results["as_client_credentials"].rate / as_base,
    }
    print()
    for name, ratio in ratios.items():
        print(f"{name:40s} {ratio:6.3f}")
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "args": vars(args),
        "scenarios": {
            name: {
                "rate": r.rate,
                "p50_ms": r.percentile(50),
                "p99_ms": r.percentile(99),
                "requests": r.requests,
                "errors": r.errors,
                "statuses": {str(k): v for k, v in r.statuses.items()},
            }
            for name, r in results.items()
        },
        "ratios": ratios,
    }
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    path = out / f"{time.strftime('%Y%m%d-%H%M%S')}-{args.database}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"\nwritten to {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
