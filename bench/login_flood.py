"""Introspection latency while successful logins flood the authorization server.

    python bench/login_flood.py [--seconds 8] [--database sqlite|postgresql]
        [--hash-concurrency 1] [--niceness 10] [--flood-connections 16]

Starts the authorization server under gunicorn (gunicorn.conf.py, 2 workers, the default
Argon2id cost: t=3, 64 MiB, 4 lanes), then measures the p50 of `POST /oauth/introspect` from
`--introspect-connections` closed loops twice: idle, and while `--flood-connections` closed
loops log one account in with the right password (password grant) as fast as the server
answers. Every login beyond PASSWORD_HASH_CONCURRENCY per worker is refused at once (503 +
Retry-After); the flood does not wait the Retry-After, as an attacker would not.
`--hash-concurrency 16 --niceness 0` approximates the behaviour before the bound (every
gunicorn thread hashing at normal priority). The load generator runs on the same cores.
Results go to bench/results/<timestamp>-login-flood-<database>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from bench.load import Request, Result, run  # noqa: E402
from bench.run import (  # noqa: E402
    API,
    APP,
    FORM,
    USER,
    bench_auth_settings,
    database_urls,
    seed_auth_server,
)
from shared.protocol.basic_auth import basic_credentials_header  # noqa: E402
from tests.processes import GunicornService, free_port, settings_env  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--hash-concurrency", type=int, default=1)
    parser.add_argument("--niceness", type=int, default=10)
    parser.add_argument("--flood-connections", type=int, default=16)
    parser.add_argument(
        "--introspect-connections", type=int, default=1, help="closed loops measuring introspection"
    )
    args = parser.parse_args()

    scratch = tempfile.TemporaryDirectory(prefix="tessera-bench-")
    workdir = Path(scratch.name)
    auth_url_db, _, schemas = database_urls(args.database, workdir, args.postgres_url)
    auth_port = free_port()
    settings = bench_auth_settings(
        auth_port,
        auth_url_db,
        workdir,
        password_hash_concurrency=args.hash_concurrency,
        password_hash_niceness=args.niceness,
        log_level="WARNING",  # a log line per refused login would measure the logger
    )
    seed_auth_server(settings, app_grant_types=["password"], app_scopes=["profile"])
    auth = GunicornService(
        "auth_server",
        {**settings_env(settings), "GUNICORN_LOG_LEVEL": "warning"},
        workers=args.workers,
        port=auth_port,
    ).start()
    try:
        token = requests.post(
            f"{auth.url}/oauth/token",
            auth=APP,
            timeout=30,
            data={"grant_type": "password", "username": USER[0], "password": USER[1]},
        ).json()["access_token"]
        introspect = Request(
            "POST",
            f"{auth.url}/oauth/introspect",
            headers=(("Authorization", basic_credentials_header(*API)), FORM),
            body=urlencode({"token": token}).encode(),
        )
        login = Request(
            "POST",
            f"{auth.url}/oauth/token",
            headers=(("Authorization", basic_credentials_header(*APP)), FORM),
            body=urlencode(
                {"grant_type": "password", "username": USER[0], "password": USER[1]}
            ).encode(),
        )
        idle = run(
            introspect, processes=1, connections=args.introspect_connections, seconds=args.seconds
        )
        flood: list[Result] = []
        flooding = threading.Thread(
            target=lambda: flood.append(
                run(
                    login,
                    processes=2,
                    connections=args.flood_connections // 2,
                    seconds=args.seconds + 2,
                )
            )
        )
        flooding.start()
        time.sleep(1)  # let the flood reach its steady state before measuring
        under_flood = run(
            introspect, processes=1, connections=args.introspect_connections, seconds=args.seconds
        )
        flooding.join()
    finally:
        auth.stop()
        if schemas:
            with create_engine(args.postgres_url).begin() as conn:
                for schema in schemas:
                    conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        scratch.cleanup()

    logins = flood[0]
    ratio = under_flood.percentile(50) / idle.percentile(50)
    print(
        f"introspection idle        p50 {idle.percentile(50):7.1f} ms"
        f"  p99 {idle.percentile(99):7.1f} ms"
    )
    print(
        f"introspection under flood p50 {under_flood.percentile(50):7.1f} ms"
        f"  p99 {under_flood.percentile(99):7.1f} ms  ({ratio:.2f}x idle)"
    )
    print(
        f"login flood ({args.flood_connections} loops): {logins.rate:.1f} req/s, "
        f"statuses {logins.statuses}, errors {logins.errors}"
    )
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "args": vars(args),
        "introspect_idle_p50_ms": idle.percentile(50),
        "introspect_flood_p50_ms": under_flood.percentile(50),
        "introspect_idle_p99_ms": idle.percentile(99),
        "introspect_flood_p99_ms": under_flood.percentile(99),
        "ratio_p50": ratio,
        "login_statuses": {str(k): v for k, v in logins.statuses.items()},
        "login_rate": logins.rate,
    }
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    path = out / f"{time.strftime('%Y%m%d-%H%M%S')}-login-flood-{args.database}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"written to {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
