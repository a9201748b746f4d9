"""CPU time per introspection with and without recording login activity, in one process.

    python bench/activity_cpu.py [--database sqlite|postgresql] [--requests 3000] [--rounds 4]

Wall-clock throughput on a shared machine drifts by more than the few percent this measures;
the CPU time the process spends per request drifts much less. Flask's test client, the real
app and database; "off" replaces record_login_activity with a no-op. The variants alternate.
Scenarios (REFRESH_ACTIVITY_INTERVAL=60, the default): one token whose activity is fresh; 200
logins each used once a (simulated) second, so one request in 60 writes; and 200 logins each
used once a minute, so every request writes (the bound, with a tiny request rate in reality).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402

from auth_server import activity, create_app  # noqa: E402
from bench.run import database_urls  # noqa: E402
from shared.protocol.basic_auth import basic_credentials_header  # noqa: E402
from tests.support import NOTES_API, auth_settings, seed  # noqa: E402

ON = activity.record_login_activity
INTERVAL = 60  # REFRESH_ACTIVITY_INTERVAL's default


def off(*args: Any, **kwargs: Any) -> bool:
    return False


class Clock:
    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="tessera-activity-cpu-"))
    url, _, schemas = database_urls(args.database, workdir, args.postgres_url)
    try:
        measure(args, url)
    finally:
        if schemas:
            with create_engine(args.postgres_url).begin() as conn:
                for schema in schemas:
                    conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def measure(args: argparse.Namespace, url: str) -> None:
    clock = Clock()
    # The clock moves by up to an hour and a half in all: tokens must outlive it.
    settings = auth_settings(
        url, "http://127.0.0.1:8000", refresh_activity_interval=INTERVAL, access_token_ttl=86400
    )
    app = create_app(settings, create_tables=True, clock=clock)
    seed(app)
    client = app.test_client()
    basic = {"Authorization": basic_credentials_header("demo-app", "demo-app-secret")}
    tokens = [
        cast(
            "dict[str, Any]",
            client.post(
                "/oauth/token",
                headers=basic,
                data={"grant_type": "password", "username": "alice", "password": "wonderland"},
            ).json,
        )["access_token"]
        for _ in range(200)
    ]
    rs = {"Authorization": basic_credentials_header(*NOTES_API)}

    def run(batch: list[str], advance: int) -> float:
        """Each token of `batch` in turn; the clock moves `advance` seconds per pass."""
        started = time.process_time()
        for i in range(args.requests):
            if i % len(batch) == 0:
                clock.now += advance
            response = client.post(
                "/oauth/introspect", headers=rs, data={"token": batch[i % len(batch)]}
            )
            assert cast("dict[str, Any]", response.json)["active"] is True
        return (time.process_time() - started) / args.requests * 1e6

    for name, batch, advance in (
        ("1 token, fresh activity (no write)", tokens[:1], 0),
        ("200 logins each 1/s: 1 in 60 writes", tokens, 1),
        ("200 logins each 1/min: every one writes", tokens, INTERVAL),
    ):
        results: dict[str, list[float]] = {"on": [], "off": []}
        run(batch, advance)  # warm-up
        for _ in range(args.rounds):
            for variant, hook in (("on", ON), ("off", off)):
                activity.record_login_activity = hook
                results[variant].append(run(batch, advance))
        activity.record_login_activity = ON
        on, off_ = (sorted(results[v]) for v in ("on", "off"))
        median_on, median_off = on[len(on) // 2], off_[len(off_) // 2]
        print(
            f"{args.database:10s} {name:40s} on {', '.join(f'{x:.0f}' for x in results['on'])} µs"
            f" | off {', '.join(f'{x:.0f}' for x in results['off'])} µs"
            f" | median on/off {median_on / median_off - 1:+.1%}",
            flush=True,
        )


if __name__ == "__main__":
    main()
