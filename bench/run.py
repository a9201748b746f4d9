"""`make bench`: the hot paths of both services under gunicorn as deployed, driven by wrk,
next to the framework ceiling and the peer servers measured in the same sitting.

    python bench/run.py [--quick] [--database sqlite|postgresql|both] [--seconds 10]
        [--peers DIR | --no-peers] [--workers 2] [--threads 2] [--connections 16]

For each database: the authorization server, the notes API and a bare Flask app
(bench/ceiling) start under gunicorn.conf.py (real processes and sockets; SQLite files or fresh
PostgreSQL schemas; the services' default logging). Each scenario gets a short wrk warm-up,
then one measured wrk run (`-t2 -c16 --latency`); the requests each gunicorn worker answered
during it come from the workers' metric files (bench/spread.py). Then, when the peers are set
up (--peers, default /tmp/bench/peers or BENCH_PEERS_DIR), node-oidc-provider and the Authlib
baseline run through their bench.sh with the same wrk settings. One table: req/s, p50, p99,
the ratio to the ceiling and to each peer, the per-worker split; the JSON goes to
bench/results/<timestamp>-wrk.json. Absolute numbers depend on the machine and on what else
runs on it: read the ratios, measured minutes apart.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
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
from bench import peers as peer_bench  # noqa: E402
from bench.cpu import workers_cpu_seconds  # noqa: E402
from bench.spread import delta, imbalance, requests_per_worker  # noqa: E402
from bench.wrk import Load, WrkResult, require_wrk, wrk  # noqa: E402
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


@dataclass(frozen=True)
class Scenario:
    name: str
    service: str  # "auth", "auth_nomemory", "notes" or "ceiling": whose workers' split is reported
    path: str
    method: str = "GET"
    body: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    # The peer runs (peers.PeerRun.key) this scenario is compared with.
    peers: tuple[str, ...] = ()


def scenarios(token: str, service_token: str) -> list[Scenario]:
    """`token`: a password login's (stored) access token; `service_token`: a client_credentials
    one (self-contained by default: auth_server/self_contained.py)."""
    app_auth = ("Authorization", basic_credentials_header(*APP))
    api_auth = ("Authorization", basic_credentials_header(*API))
    return [
        Scenario("ceiling /healthz (bare Flask)", "ceiling", "/healthz"),
        Scenario("AS /healthz", "auth", "/healthz"),
        Scenario("RS /healthz", "notes", "/healthz"),
        Scenario(
            "AS token client_credentials (ES256 JWT)",
            "auth",
            "/oauth/token",
            "POST",
            "grant_type=client_credentials&scope=notes%3Aread",
            (app_auth, FORM),
            ("oidc-provider token", "authlib-baseline token"),
        ),
        Scenario(
            "AS introspect",
            "auth",
            "/oauth/introspect",
            "POST",
            urlencode({"token": token, "token_type_hint": "access_token"}),
            (api_auth, FORM),
            ("oidc-provider introspect", "authlib-baseline introspect"),
        ),
        Scenario(
            "AS introspect, memory off (reads the database)",
            "auth_nomemory",
            "/oauth/introspect",
            "POST",
            urlencode({"token": token, "token_type_hint": "access_token"}),
            (api_auth, FORM),
            ("oidc-provider introspect", "authlib-baseline introspect"),
        ),
        Scenario(
            "AS introspect client_credentials token, memory off (verifies its signature)",
            "auth_nomemory",
            "/oauth/introspect",
            "POST",
            urlencode({"token": service_token, "token_type_hint": "access_token"}),
            (api_auth, FORM),
            ("oidc-provider introspect", "authlib-baseline introspect"),
        ),
        Scenario(
            "RS GET /api/me (introspects)",
            "notes",
            "/api/me",
            headers=(("Authorization", f"Bearer {token}"),),
            peers=("authlib-baseline resource",),
        ),
    ]


def start_stack(database: str, workdir: Path, args: argparse.Namespace) -> dict:
    """The AS, the RS and the ceiling app under gunicorn; {name: GunicornService}, schemas."""
    auth_url_db, notes_url_db, schemas = database_urls(database, workdir, args.postgres_url)
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
    )
    resource_server.create_app(notes_settings, create_tables=True)
    services = {
        "auth": GunicornService(
            "auth_server", settings_env(auth_settings), workers=args.workers, port=auth_port
        ),
        "notes": GunicornService(
            "resource_server", settings_env(notes_settings), workers=args.workers
        ),
        "ceiling": GunicornService("bench.ceiling", {}, workers=args.workers),
        # The same server with INTROSPECTION_MEMORY=false: what an introspection costs when it
        # reads the database (a token's first introspection at a worker, or memory off).
        "auth_nomemory": GunicornService(
            "auth_server",
            settings_env(auth_settings.model_copy(update={"introspection_memory": False})),
            workers=args.workers,
        ),
    }
    started = {}
    try:
        for name, service in services.items():
            started[name] = service.start()
    except BaseException:
        for service in started.values():
            service.stop()
        drop_schemas(args.postgres_url, schemas)
        raise
    return {"services": services, "schemas": schemas}


def drop_schemas(pg_url: str, schemas: list[str]) -> None:
    if schemas:
        with create_engine(pg_url).begin() as conn:
            for schema in schemas:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def measure(scenario: Scenario, services: dict, load: Load, warmup: float) -> dict:
    service = services[scenario.service]
    url = f"{service.url}{scenario.path}"
    request: dict[str, Any] = {
        "method": scenario.method,
        "body": scenario.body,
        "headers": scenario.headers,
    }
    wrk(url, load, seconds=warmup, **request)
    watched = [name for name in ("auth", "auth_nomemory", "notes") if name in services]
    before = {n: requests_per_worker(services[n].env["PROMETHEUS_MULTIPROC_DIR"]) for n in watched}
    cpu_before = {n: workers_cpu_seconds(s.process.pid) for n, s in services.items()}
    result: WrkResult = wrk(url, load, **request)
    cpu_after = {n: workers_cpu_seconds(s.process.pid) for n, s in services.items()}
    after = {n: requests_per_worker(services[n].env["PROMETHEUS_MULTIPROC_DIR"]) for n in watched}
    split = {n: delta(before[n], after[n]) for n in watched}
    split = {n: counts for n, counts in split.items() if sum(counts.values())}
    # CPU of each service's workers per request of the scenario (wrk's count), in µs; the
    # services that did nothing for it are left out.
    cpu_us = {
        n: round((cpu_after[n] - cpu_before[n]) / result.requests * 1e6, 1)
        for n in services
        if result.requests and (n == scenario.service or n in split)
    }
    return {
        **result.as_dict(),
        "cpu_us_per_request": cpu_us,
        "per_worker": {n: list(counts.values()) for n, counts in split.items()},
        "imbalance": {n: imbalance(counts) for n, counts in split.items()},
    }


def check(token: str, services: dict) -> None:
    """The scenarios measure what they claim: the token works at the RS, a bad one does not."""
    notes = services["notes"].url
    good = requests.get(f"{notes}/api/me", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    bad = requests.get(f"{notes}/api/me", headers={"Authorization": "Bearer nope"}, timeout=10)
    if good.status_code != 200 or bad.status_code != 401:
        raise SystemExit(f"pre-check failed: /api/me {good.status_code} / {bad.status_code}")


def bench_database(database: str, args: argparse.Namespace, load: Load) -> dict[str, dict]:
    with tempfile.TemporaryDirectory(prefix="tessera-bench-") as scratch:
        stack = start_stack(database, Path(scratch), args)
        services = stack["services"]
        try:
            token = requests.post(
                f"{services['auth'].url}/oauth/token",
                auth=APP,
                timeout=10,
                data={"grant_type": "password", "username": USER[0], "password": USER[1]},
            ).json()["access_token"]
            check(token, services)
            service_token = requests.post(
                f"{services['auth'].url}/oauth/token",
                auth=APP,
                timeout=10,
                data={"grant_type": "client_credentials", "scope": "notes:read"},
            ).json()["access_token"]
            introspected = requests.post(
                f"{services['auth_nomemory'].url}/oauth/introspect",
                auth=API,
                timeout=10,
                data={"token": service_token},
            ).json()
            if introspected.get("active") is not True:
                raise SystemExit(f"pre-check failed: client_credentials token {introspected}")
            results = {}
            for scenario in scenarios(token, service_token):
                results[scenario.name] = {
                    **measure(scenario, services, load, args.warmup),
                    "peers": list(scenario.peers),
                }
                print_row(f"{database:10s} {scenario.name}", results[scenario.name])
            return results
        finally:
            for service in services.values():
                service.stop()
            drop_schemas(args.postgres_url, stack["schemas"])


def bench_peers(peers_dir: Path, load: Load) -> dict[str, dict]:
    results = {}
    for run in peer_bench.RUNS:
        ports = {"op": free_port(), "as": free_port(), "rs": free_port()}
        try:
            results[run.key] = peer_bench.run_peer(peers_dir, run, load, ports)
        except (RuntimeError, OSError) as exc:
            print(f"peer {run.key}: {exc}", file=sys.stderr)
            continue
        print_row(f"{'peer':10s} {run.key}", results[run.key])
    return results


def print_row(label: str, row: dict, extra: str = "") -> None:
    errors = row["non_2xx"] + row["socket_errors"]
    print(
        f"{label:52s} {row['rps']:9.0f} {row['p50_ms']:8.1f} {row['p99_ms']:8.1f}"
        f"{'' if not errors else f'  ERRORS {errors}'}{extra}",
        flush=True,
    )


def ratio(a: float, b: float | None) -> str:
    return f"{a / b:.2f}" if b else "-"


def print_table(report: dict) -> None:
    peers = report["peers"]
    print()
    print(
        f"{'scenario':52s} {'req/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} {'/ceil':>6s}"
        f" {'/oidc':>6s} {'/authlib':>8s}  {'CPU us/req':18s} per-worker requests"
    )
    for database, results in report["tessera"].items():
        ceiling = results["ceiling /healthz (bare Flask)"]["rps"]
        for name, row in results.items():
            oidc = next(
                (peers[p]["rps"] for p in row["peers"] if p.startswith("oidc") and p in peers), None
            )
            authlib = next(
                (peers[p]["rps"] for p in row["peers"] if p.startswith("authlib") and p in peers),
                None,
            )
            split = "  ".join(
                f"{service} {'/'.join(str(c) for c in counts)}"
                for service, counts in row["per_worker"].items()
            )
            errors = row["non_2xx"] + row["socket_errors"]
            cpu = " ".join(f"{n} {us:.0f}" for n, us in row["cpu_us_per_request"].items())
            print(
                f"{database + ' ' + name:52s} {row['rps']:9.0f} {row['p50_ms']:8.1f}"
                f" {row['p99_ms']:8.1f} {ratio(row['rps'], ceiling):>6s}"
                f" {ratio(row['rps'], oidc):>6s} {ratio(row['rps'], authlib):>8s}"
                f"  {cpu:18s} {split}" + (f"  ERRORS {errors}" if errors else "")
            )
    for key, row in peers.items():
        print(f"{'peer ' + key:52s} {row['rps']:9.0f} {row['p50_ms']:8.1f} {row['p99_ms']:8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 s runs, SQLite, no peers")
    parser.add_argument("--seconds", type=float, help="each measured run (default 10, quick 3)")
    parser.add_argument(
        "--warmup", type=float, help="wrk warm-up per scenario (default 2, quick 1)"
    )
    parser.add_argument(
        "--database", choices=("sqlite", "postgresql", "both"), help="default both (quick: sqlite)"
    )
    parser.add_argument(
        "--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per service")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t")
    parser.add_argument("--connections", type=int, default=16, help="wrk -c")
    parser.add_argument(
        "--peers", type=Path, default=peer_bench.DEFAULT_DIR, help="the peers' folder (bench.sh)"
    )
    parser.add_argument("--no-peers", action="store_true")
    args = parser.parse_args()
    args.seconds = args.seconds or (3.0 if args.quick else 10.0)
    args.warmup = args.warmup or (1.0 if args.quick else 2.0)
    args.database = args.database or ("sqlite" if args.quick else "both")
    require_wrk()
    load = Load(threads=args.threads, connections=args.connections, seconds=args.seconds)
    databases = ("sqlite", "postgresql") if args.database == "both" else (args.database,)

    print(f"{'':52s} {'req/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s}")
    report: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "wrk": f"wrk -t{load.threads} -c{load.connections} -d{load.seconds:g}s --latency",
        "tessera": {},
        "peers": {},
    }
    for database in databases:
        report["tessera"][database] = bench_database(database, args, load)
    why_not = (
        "--no-peers or --quick" if args.no_peers or args.quick else peer_bench.available(args.peers)
    )
    if why_not is None:
        report["peers"] = bench_peers(args.peers, load)
    else:
        print(f"peers skipped: {why_not}")
    print_table(report)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    path = out / f"{time.strftime('%Y%m%d-%H%M%S')}-wrk.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"\nwritten to {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
