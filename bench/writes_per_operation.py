"""Rows each token operation writes to the authorization server's database (the capacity
model of docs/benchmarks.md).

    python bench/writes_per_operation.py [--database sqlite|postgresql] [--repeat 20]

Runs the authorization server in-process (its app factory and Flask's test client: what is
counted is statements, not speed) on a fresh database, and counts every INSERT, UPDATE and
DELETE the engine executes, with the rows each touched, per password login, refresh,
client_credentials token and introspection.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import event  # noqa: E402

from auth_server import create_app as create_auth_app  # noqa: E402
from auth_server.db import db  # noqa: E402
from bench.run import (  # noqa: E402
    API,
    APP,
    USER,
    bench_auth_settings,
    database_urls,
    drop_schemas,
    seed_auth_server,
)
from shared.protocol.basic_auth import basic_credentials_header  # noqa: E402

WRITES = ("INSERT", "UPDATE", "DELETE")
_CTE_WRITE = re.compile(r"\b(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+(\"?\w+\"?)", re.IGNORECASE)


class WriteCounter:
    def __init__(self) -> None:
        self.statements: Counter[str] = Counter()
        self.rows = 0

    def __call__(self, conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper()
        if verb == "WITH":
            # A statement with data-modifying CTEs (client_credentials on PostgreSQL: one
            # statement inserts the access token and its audit row): each INSERT/UPDATE/DELETE
            # in it counts, one row each, as the statement's own row count is its SELECT's.
            for found_verb, table in _CTE_WRITE.findall(statement):
                self.statements[f"{found_verb.split()[0].upper()} {table.strip(chr(34))}"] += 1
                self.rows += 1
        elif verb in WRITES:
            # INSERT INTO t / UPDATE t / DELETE FROM t
            words = statement.split()
            table = (words[2] if verb != "UPDATE" else words[1]).strip('"')
            self.statements[f"{verb} {table}"] += 1
            self.rows += max(cursor.rowcount, 0)

    def reset(self) -> None:
        self.statements.clear()
        self.rows = 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1/test")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="tessera-writes-"))
    auth_url, _, schemas = database_urls(args.database, workdir, args.postgres_url)
    try:
        settings = bench_auth_settings(8000, auth_url, workdir)
        seed_auth_server(
            settings, ["password", "refresh_token", "client_credentials"], ["notes:read"]
        )
        app = create_auth_app(settings)
        client = app.test_client()
        counter = WriteCounter()
        with app.app_context():
            event.listen(db.engine, "after_cursor_execute", counter)
        app_auth = {"Authorization": basic_credentials_header(*APP)}
        api_auth = {"Authorization": basic_credentials_header(*API)}

        def token(**form: str) -> dict:
            answer = client.post("/oauth/token", data=form, headers=app_auth)
            assert answer.status_code == 200, answer.get_json()
            return answer.get_json()

        results = {}
        login = {"grant_type": "password", "username": USER[0], "password": USER[1]}
        for name, operation in (
            ("password login", lambda: token(**login)),
            ("client_credentials token", lambda: token(grant_type="client_credentials")),
        ):
            counter.reset()
            for _ in range(args.repeat):
                operation()
            results[name] = (dict(counter.statements), counter.rows)
        refresh_token = token(**login)["refresh_token"]
        counter.reset()
        for _ in range(args.repeat):
            refresh_token = token(grant_type="refresh_token", refresh_token=refresh_token)[
                "refresh_token"
            ]
        results["refresh"] = (dict(counter.statements), counter.rows)
        access_token = token(**login)["access_token"]
        counter.reset()
        for _ in range(args.repeat):
            answer = client.post(
                "/oauth/introspect", data={"token": access_token}, headers=api_auth
            )
            assert answer.get_json().get("active") is True, answer.get_json()
        # the first records the login's use (sliding expiration), the rest of the interval none
        results["introspection"] = (
            dict(counter.statements),
            counter.rows,
        )
        print(f"{args.database}: statements and rows written per operation ({args.repeat} each)")
        for name, (statements, rows) in results.items():
            per = ", ".join(f"{k} x{v / args.repeat:g}" for k, v in sorted(statements.items()))
            print(f"  {name}: {rows / args.repeat:g} rows ({per or 'none'})")
    finally:
        drop_schemas(args.postgres_url, schemas)


if __name__ == "__main__":
    main()
