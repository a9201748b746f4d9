"""How stale can a resource server with the introspection cache be? (issue 8)

    python bench/revocation_staleness.py [--revocations 200] [--replicas 3] [--seconds 5]
                                         [--database sqlite|postgresql]

Starts the authorization server (gunicorn, publishing revocation events to Redis at
--redis-url) and --replicas notes APIs (gunicorn, INTROSPECTION_CACHE_TTL on), plus one notes
API in the default mode for comparison. Then:

1. Staleness. For each of --revocations tokens (alternately an RFC 7009 revocation of the
   access token and a logout, i.e. revocation of its refresh token): every replica caches it
   (two requests), one thread per replica requests /api/me with it back to back, and the token
   is revoked. For each replica: the time from the revocation call's 200 (as the caller
   received it) to that replica's first 401, and the number of requests sent after that 200
   which were accepted (must be 0).
2. Throughput. /api/me with one cached token against replica 0, and replica 0's /healthz,
   alternated, --seconds each; /api/me on the uncached API for comparison. During the cached
   /api/me run, the authorization server's introspections (its /metrics) per request served.

Password hashing is set to its cheapest (the logins are set-up, not what is measured).
Results go to bench/results/<timestamp>-staleness-<database>.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

import resource_server  # noqa: E402
from bench.load import Request, run  # noqa: E402
from bench.run import (  # noqa: E402
    API,
    APP,
    USER,
    bench_auth_settings,
    database_urls,
    seed_auth_server,
)
from resource_server.settings import ResourceSettings  # noqa: E402
from tests.processes import GunicornService, free_port, settings_env  # noqa: E402

CHEAP_PASSWORDS = dict(
    password_hash_time_cost=1,
    password_hash_memory_kib=8,
    password_hash_parallelism=1,
    password_hash_concurrency=64,
)
QUIET = {"GUNICORN_LOG_LEVEL": "warning"}


def sample(metrics_url: str, name: str) -> float:
    """Sum of every sample of a metric (all label values) at a /metrics endpoint."""
    total = 0.0
    for line in requests.get(metrics_url, timeout=5).text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def login(auth_url: str) -> dict:
    response = requests.post(
        f"{auth_url}/oauth/token",
        auth=APP,
        timeout=10,
        data={"grant_type": "password", "username": USER[0], "password": USER[1]},
    )
    response.raise_for_status()
    return response.json()


class Poller(threading.Thread):
    """Requests /api/me with one token back to back until it gets a 401 sent after ``armed``."""

    def __init__(self, url: str, token: str, session: requests.Session) -> None:
        super().__init__(daemon=True)
        self.url = f"{url}/api/me"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.session = session
        self.revoked_at: float | None = None  # set by the main thread once the 200 arrived
        self.first_401: float | None = None
        self.accepted_after: int = 0
        self.started = threading.Event()
        self.deadline = time.perf_counter() + 10

    def run(self) -> None:
        while time.perf_counter() < self.deadline:
            sent = time.perf_counter()
            status = self.session.get(self.url, headers=self.headers, timeout=5).status_code
            received = time.perf_counter()
            self.started.set()
            revoked_at = self.revoked_at
            if status == 401:
                self.first_401 = received
                return
            if status != 200:
                raise RuntimeError(f"unexpected status {status}")
            if revoked_at is not None and sent > revoked_at:
                self.accepted_after += 1


def staleness(auth_url: str, replicas: list[str], revocations: int) -> dict:
    sessions = [requests.Session() for _ in replicas]
    auth_http = requests.Session()
    logins = [login(auth_url) for _ in range(revocations)]
    delays: list[list[float]] = [[] for _ in replicas]
    accepted_after = 0
    for index, tokens in enumerate(logins):
        access = tokens["access_token"]
        for session, url in zip(sessions, replicas, strict=True):
            for _ in range(2):
                status = session.get(
                    f"{url}/api/me", headers={"Authorization": f"Bearer {access}"}, timeout=5
                ).status_code
                if status != 200:
                    raise RuntimeError(f"warming {url}: {status}")
        pollers = [
            Poller(url, access, session) for url, session in zip(replicas, sessions, strict=True)
        ]
        for poller in pollers:
            poller.start()
        for poller in pollers:
            poller.started.wait(5)
        if index % 2 == 0:
            form = {"token": access, "token_type_hint": "access_token"}
        else:
            form = {"token": tokens["refresh_token"], "token_type_hint": "refresh_token"}
        response = auth_http.post(f"{auth_url}/oauth/revoke", data=form, auth=APP, timeout=10)
        revoked_at = time.perf_counter()
        if response.status_code != 200:
            raise RuntimeError(f"revocation answered {response.status_code}")
        for poller in pollers:
            poller.revoked_at = revoked_at
        for replica, poller in enumerate(pollers):
            poller.join(15)
            if poller.first_401 is None:
                raise RuntimeError(f"replica {replica} never refused revoked token {index}")
            delays[replica].append((poller.first_401 - revoked_at) * 1000)
            accepted_after += poller.accepted_after
    every = [delay for per_replica in delays for delay in per_replica]
    return {
        "revocations": revocations,
        "replicas": len(replicas),
        "ms_from_200_to_first_401": summary(every),
        "per_replica": [summary(per_replica) for per_replica in delays],
        "requests_accepted_after_the_revocation_answered": accepted_after,
    }


def summary(values: list[float]) -> dict:
    ordered = sorted(values)

    def at(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]

    return {
        "p50": round(at(50), 2),
        "p99": round(at(99), 2),
        "max": round(ordered[-1], 2),
        "mean": round(statistics.fmean(ordered), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--revocations", type=int, default=200)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--auth-workers", type=int, default=2)
    parser.add_argument("--rs-workers", type=int, default=1, help="gunicorn workers per replica")
    parser.add_argument("--processes", type=int, default=2, help="load generator processes")
    parser.add_argument("--connections", type=int, default=8, help="connections per process")
    args = parser.parse_args()

    scratch = tempfile.TemporaryDirectory(prefix="tessera-staleness-")
    workdir = Path(scratch.name)
    auth_db, notes_db, schemas = database_urls(args.database, workdir, args.postgres_url)
    channel = f"tessera-bench:{uuid.uuid4().hex}"
    events = dict(revocation_events_url=args.redis_url, revocation_events_channel=channel)
    auth_port = free_port()
    auth_settings = bench_auth_settings(auth_port, auth_db, workdir, **events, **CHEAP_PASSWORDS)
    seed_auth_server(
        auth_settings, app_grant_types=["password", "refresh_token"], app_scopes=["profile"]
    )

    def notes_settings(**overrides) -> ResourceSettings:
        return ResourceSettings(
            resource_database_url=notes_db,
            auth_server_url=auth_settings.auth_issuer,
            resource_client_id=API[0],
            resource_client_secret=API[1],
            log_level="WARNING",
            **overrides,
        )

    resource_server.create_app(notes_settings(), create_tables=True)
    cached = notes_settings(introspection_cache_ttl=300, **events)
    services = []
    try:
        auth = GunicornService(
            "auth_server",
            {**settings_env(auth_settings), **QUIET},
            workers=args.auth_workers,
            port=auth_port,
        ).start()
        services.append(auth)
        replicas = []
        for _ in range(args.replicas):
            replica = GunicornService(
                "resource_server", {**settings_env(cached), **QUIET}, workers=args.rs_workers
            ).start()
            services.append(replica)
            replicas.append(replica)
        uncached = GunicornService(
            "resource_server", {**settings_env(notes_settings()), **QUIET}, workers=1
        ).start()
        services.append(uncached)
        wait_until_caching(auth.url, replicas)

        report: dict[str, object] = {
            "staleness": staleness(auth.url, [r.url for r in replicas], args.revocations)
        }
        print(json.dumps(report["staleness"], indent=2), flush=True)

        token = login(auth.url)["access_token"]
        bearer = (("Authorization", f"Bearer {token}"),)
        me = Request("GET", f"{replicas[0].url}/api/me", headers=bearer)
        healthz = Request("GET", f"{replicas[0].url}/healthz")
        load = dict(processes=args.processes, connections=args.connections, seconds=args.seconds)
        rates: dict[str, list[float]] = {"healthz": [], "me_cached": []}
        introspected = served = 0.0
        outcomes_before = cache_outcomes(replicas[0].metrics_url)
        for _ in range(2):  # alternated, the machine is shared
            rates["healthz"].append(run(healthz, **load).rate)
            before = sample(auth.metrics_url, "tessera_introspections_total")
            result = run(me, **load)
            introspected += sample(auth.metrics_url, "tessera_introspections_total") - before
            served += result.requests
            rates["me_cached"].append(result.rate)
            if result.errors or set(result.statuses) != {200}:
                raise RuntimeError(f"/api/me: {result.statuses}, {result.errors} errors")
        outcomes_after = cache_outcomes(replicas[0].metrics_url)
        uncached_rate = run(Request("GET", f"{uncached.url}/api/me", headers=bearer), **load).rate
        best = {name: max(values) for name, values in rates.items()}
        report["throughput"] = {
            "rs_healthz_req_s": rates["healthz"],
            "api_me_cached_req_s": rates["me_cached"],
            "api_me_uncached_req_s": uncached_rate,
            "api_me_cached / rs_healthz (best of each)": round(
                best["me_cached"] / best["healthz"], 3
            ),
            "api_me_uncached / rs_healthz (best)": round(uncached_rate / best["healthz"], 3),
            "as_introspections_per_cached_request": round(introspected / served, 6),
            "replica0_cache_outcomes_during_api_me": {
                name: outcomes_after.get(name, 0) - outcomes_before.get(name, 0)
                for name in ("hit", "miss", "bypass")
            },
        }
        print(json.dumps(report["throughput"], indent=2), flush=True)
    finally:
        for service in reversed(services):
            service.stop()
        if schemas:
            with create_engine(args.postgres_url).begin() as conn:
                for schema in schemas:
                    conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        scratch.cleanup()

    report["args"] = vars(args)
    report["when"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    path = out / f"{time.strftime('%Y%m%d-%H%M%S')}-staleness-{args.database}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"\nwritten to {path.relative_to(ROOT)}")


def wait_until_caching(auth_url: str, replicas: list[GunicornService], timeout: float = 20):
    """Every replica's workers have subscribed: a repeated request is a cache hit."""
    token = login(auth_url)["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + timeout
    for replica in replicas:
        while not _hits(replica):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{replica.url} never served from its cache")
            requests.get(f"{replica.url}/api/me", headers=headers, timeout=5)
            time.sleep(0.05)


def _hits(replica: GunicornService) -> bool:
    return cache_outcomes(replica.metrics_url).get("hit", 0) > 0


def cache_outcomes(metrics_url: str) -> dict[str, float]:
    """The replica's tessera_introspection_cache_total by outcome (hit, miss, bypass)."""
    outcomes = {}
    prefix = 'tessera_introspection_cache_total{outcome="'
    for line in requests.get(metrics_url, timeout=5).text.splitlines():
        if line.startswith(prefix):
            outcomes[line[len(prefix) :].split('"', 1)[0]] = float(line.rsplit(" ", 1)[1])
    return outcomes


if __name__ == "__main__":
    main()
