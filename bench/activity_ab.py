"""A/B: introspection throughput with and without recording login activity (sliding expiration).

    python bench/activity_ab.py [--seconds 8] [--rounds 2] [--database sqlite|postgresql]

Both variants run the same code and schema under gunicorn; in "off" the workers load a WSGI
wrapper that replaces record_login_activity with a no-op, so the difference is the hook alone.
Scenarios: one token (the activity is fresh: no write), and 200 logins' tokens in turn with
REFRESH_ACTIVITY_INTERVAL=1 (each login written about once a second: the worst case). The
variants alternate (on, off, on, off, ...) so a busy machine's drift hits both; wrk does the
load (-t2 -c16), rotating over the tokens with a Lua script.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from bench.run import API, APP, USER, bench_auth_settings, database_urls, seed_auth_server  # noqa: E402
from shared.protocol.basic_auth import basic_credentials_header  # noqa: E402
from tests.processes import GunicornService, free_port, settings_env  # noqa: E402

WRAPPER = """from auth_server import activity

activity.record_login_activity = lambda *args: False

from auth_server.wsgi import app  # noqa: E402
"""

LUA = """
tokens = {%s}
i = 0
request = function()
  i = i + 1
  return wrk.format("POST", "/oauth/introspect", nil, "token=" .. tokens[i %% #tokens + 1])
end
"""


def logins(url: str, count: int) -> list[str]:
    with requests.Session() as http:
        return [
            http.post(
                f"{url}/oauth/token",
                auth=APP,
                timeout=30,
                data={"grant_type": "password", "username": USER[0], "password": USER[1]},
            ).json()["access_token"]
            for _ in range(count)
        ]


def wrk(url: str, tokens: list[str], seconds: float, workdir: Path) -> tuple[float, str]:
    script = workdir / "introspect.lua"
    script.write_text(LUA % ", ".join(f'"{t}"' for t in tokens))
    headers = [
        "-H",
        f"Authorization: {basic_credentials_header(*API)}",
        "-H",
        "Content-Type: application/x-www-form-urlencoded",
    ]
    out = subprocess.run(
        ["wrk", "-t2", "-c16", f"-d{seconds:g}s", "--latency", "-s", str(script), *headers, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    requests_per_second = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert requests_per_second is not None, out  # wrk always prints it
    rate = float(requests_per_second.group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rate, non2xx.group(1) if non2xx else "0"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    args = parser.parse_args()
    scratch = tempfile.TemporaryDirectory(prefix="tessera-activity-ab-")
    workdir = Path(scratch.name)
    (workdir / "noactivity").mkdir()
    (workdir / "noactivity" / "__init__.py").write_text("")
    (workdir / "noactivity" / "wsgi.py").write_text(WRAPPER)
    auth_db, _, schemas = database_urls(args.database, workdir, args.postgres_url)
    port = free_port()
    fast = dict(password_hash_time_cost=1, password_hash_memory_kib=8, password_hash_parallelism=1)
    try:
        for interval, count in ((60, 1), (1, 200)):
            settings = bench_auth_settings(
                port, auth_db, workdir, refresh_activity_interval=interval, **fast
            )
            if interval == 60:
                seed_auth_server(settings, ["password", "refresh_token"], ["profile"])
            env = {
                **settings_env(settings),
                "GUNICORN_LOG_LEVEL": "warning",
                "PYTHONPATH": f"{ROOT}:{workdir}",
            }
            tokens: list[str] = []
            for round_ in range(args.rounds):
                for variant, module in (("on", "auth_server"), ("off", "noactivity")):
                    service = GunicornService(module, env, workers=2, port=port).start()
                    try:
                        if not tokens:
                            tokens = logins(service.url, count)
                        rate, non2xx = wrk(
                            f"{service.url}/oauth/introspect", tokens, args.seconds, workdir
                        )
                    finally:
                        service.stop()
                    print(
                        f"interval={interval:>2} logins={count:>3} round={round_ + 1} "
                        f"activity={variant:3s} {rate:8.1f} req/s  non-2xx {non2xx}",
                        flush=True,
                    )
    finally:
        if schemas:
            with create_engine(args.postgres_url).begin() as conn:
                for schema in schemas:
                    conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        scratch.cleanup()


if __name__ == "__main__":
    main()
