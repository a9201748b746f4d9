"""CPU per /healthz request of each service against the bare Flask ceiling, without wrk.

`python -m bench.healthz_cost [--requests N] [--rounds R]`: each app (bench/ceiling, the
authorization server, the resource server; SQLite, test-like settings) is built in a process of
its own, set up as a gunicorn worker sets it up (gevent's monkey-patching, prometheus-client's
multiprocess mode, BufferedApp around the app as gunicorn.conf.py's post_worker_init puts it,
the service's LOG_FORMAT and level, its log written to a file), and answers N GET /healthz
requests through its WSGI callable, R rounds. Reported: the median CPU time (time.process_time)
per request, and the ceiling's CPU over the service's.

This is the Python work of a request above gunicorn only: gunicorn's parsing and writing and
the kernel's share cost every app the same (about 200 us of the 314 us per request a worker of
the ceiling spent under wrk), so the gap between a service and the ceiling measured here is the
gap under wrk, and the ratio here is lower than the one wrk sees. `--estimate-total US` prints
the ratio with that common part added (the ceiling's worker CPU per request under wrk).

`--callgrind` runs one app (`--app`) a fixed number of requests for valgrind's instruction
counts: `valgrind --tool=callgrind python -m bench.healthz_cost --callgrind --app auth`.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

APPS = ("ceiling", "auth", "resource")


def _build(name: str, workdir: Path):
    if name == "ceiling":
        from bench.ceiling.wsgi import app

        return app
    from tests import support

    if name == "auth":
        import auth_server

        settings = support.auth_settings(
            f"sqlite:///{workdir}/auth.sqlite3", "http://127.0.0.1:8000", log_level="INFO"
        )
        return auth_server.create_app(settings, create_tables=True)
    import resource_server
    from resource_server.settings import ResourceSettings

    return resource_server.create_app(
        ResourceSettings(
            resource_database_url=f"sqlite:///{workdir}/notes.sqlite3",
            auth_server_url="http://127.0.0.1:1",
            resource_client_id="notes-api",
            resource_client_secret="notes-api-secret",
            log_level="INFO",
        ),
        create_tables=True,
    )


class _Client:
    """A connection that has sent `requests` pipelined GET /healthz, for gunicorn's worker."""

    def __init__(self, requests: int) -> None:
        self._incoming = io.BytesIO(_REQUEST * requests)
        self.sent = 0

    def recv(self, size: int) -> bytes:
        return self._incoming.read(size)

    def sendall(self, data: bytes) -> None:
        if not data.startswith(b"HTTP/1.1 200 OK\r\n") or not data.endswith(b'{"status":"ok"}\n'):
            raise AssertionError(data)
        self.sent += 1

    def setblocking(self, flag: int) -> None:
        pass

    def close(self) -> None:
        pass


class _Listener:
    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", 8000)


# What wrk sends (bench/wrk/request.lua adds no header to a GET).
_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n"


def _gunicorn_worker(app):
    """A worker of gunicorn.conf.py's class and settings, serving `app` as post_worker_init
    wraps it, ready to handle connections (handle(listener, client, addr)) in this process."""
    import runpy

    from gunicorn.config import Config
    from gunicorn.glogging import Logger

    from shared.service import balanced_worker, coalescing_response

    cfg = Config()
    conf_file = Path(__file__).resolve().parent.parent / "gunicorn.conf.py"
    settings = runpy.run_path(str(conf_file))
    for key, value in settings.items():
        if key in cfg.settings:
            cfg.set(key, value)
    coalescing_response.install()
    worker = balanced_worker.BalancedGeventWorker(0, os.getpid(), [], app, 30, cfg, Logger(cfg))
    worker.wsgi = app
    cfg.post_worker_init(worker)
    return worker, settings["max_requests_per_connection"] or 100


def _serve(name: str, requests: int, rounds: int, callgrind: bool) -> dict:
    """In this process: set up as a gunicorn worker, then time `rounds` of `requests`."""
    from gevent import monkey

    monkey.patch_all()
    workdir = Path(tempfile.mkdtemp(prefix="tessera-healthz-cost-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(workdir)
    log_file = open(workdir / "log", "w")  # noqa: SIM115 - the process's stderr from now on
    app = _build(name, workdir)
    worker, per_connection = _gunicorn_worker(app)
    os.dup2(log_file.fileno(), 2)
    listener, addr = _Listener(), ("127.0.0.1", 40000)
    answered = 0

    def answer() -> None:
        # A connection of per_connection requests (gunicorn then closes it), every so often.
        nonlocal answered
        if answered % per_connection == 0:
            client = _Client(per_connection)
            worker.handle(listener, client, addr)
            assert client.sent == per_connection, client.sent
        answered += 1

    for _ in range(300 if callgrind else 2000):  # warm: the first request sets up a lot
        answer()
    if callgrind:
        _instrument()
        os.getppid()  # --zero-before=os_getppid: the counts start here
        for _ in range(requests):
            answer()
        os.getpgrp()  # --dump-before=os_getpgrp: and end here
        shutil.rmtree(workdir, ignore_errors=True)
        return {}
    per_request = []
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(requests):
            answer()
        per_request.append((time.process_time() - started) / requests * 1e6)
    log_file.flush()
    lines = (workdir / "log").read_text().splitlines()
    shutil.rmtree(workdir, ignore_errors=True)
    return {"us": statistics.median(per_request), "rounds": per_request, "log_lines": len(lines)}


def _instrument() -> None:
    """Under `valgrind --tool=callgrind --instr-atstart=no`: instrumentation on from here (the
    start-up ran uninstrumented, several times faster)."""
    if os.environ.get("HEALTHZ_COST_INSTR_OFF") != "1":
        return
    control = subprocess.Popen(["callgrind_control", "--instr=on", str(os.getpid())])
    while control.poll() is None:  # valgrind reads the command while this process runs
        pass


def _report_instructions(requests: int) -> None:
    """Each app under callgrind: instructions per request, the same on every run."""
    counts = {}
    for name in APPS:
        with tempfile.TemporaryDirectory() as out:
            subprocess.run(
                ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
                + ["--zero-before=os_getppid", "--dump-before=os_getpgrp"]
                + [f"--callgrind-out-file={out}/cg", sys.executable, "-m", "bench.healthz_cost"]
                + ["--app", name, "--callgrind", "--requests", str(requests)],
                check=True,
                capture_output=True,
                # The same dict layouts (string hashes) on every run: the same count.
                env={**os.environ, "HEALTHZ_COST_INSTR_OFF": "1", "PYTHONHASHSEED": "0"},
                cwd=Path(__file__).resolve().parent.parent,
            )
            text = Path(out, "cg.1").read_text()
        summary = next(line for line in text.splitlines() if line.startswith("summary:"))
        counts[name] = int(summary.split()[1]) / requests
    ceiling = counts["ceiling"]
    print(f"{'app':10} {'instr/req':>10} {'gap':>9} {'ratio':>6}")
    for name in APPS:
        print(
            f"{name:10} {counts[name]:10.0f} {counts[name] - ceiling:9.0f}"
            f" {ceiling / counts[name]:6.2f}"
        )


def _report_wrk(seconds: float) -> None:
    """Each app under gunicorn (gunicorn.conf.py, 2 workers, SQLite), /healthz loaded by wrk as
    `make bench` loads it: the workers' CPU per request (bench/cpu.py), and req/s."""
    from bench.cpu import workers_cpu_seconds
    from bench.run import bench_auth_settings, seed_auth_server
    from bench.wrk import Load, wrk
    from resource_server.settings import ResourceSettings
    from tests.processes import GunicornService, free_port, settings_env

    workdir = Path(tempfile.mkdtemp(prefix="tessera-healthz-wrk-"))
    port = free_port()
    auth = bench_auth_settings(port, f"sqlite:///{workdir}/auth.sqlite3", workdir)
    seed_auth_server(auth, app_grant_types=["client_credentials"], app_scopes=["profile"])
    notes = ResourceSettings(
        resource_database_url=f"sqlite:///{workdir}/notes.sqlite3",
        auth_server_url=auth.auth_issuer,
        resource_client_id="notes-api",
        resource_client_secret="notes-api-secret",
    )
    import resource_server

    resource_server.create_app(notes, create_tables=True)
    services = {
        "ceiling": GunicornService("bench.ceiling", {}, workers=2),
        "auth": GunicornService("auth_server", settings_env(auth), workers=2, port=port),
        "resource": GunicornService("resource_server", settings_env(notes), workers=2),
    }
    load = Load(threads=2, connections=16, seconds=seconds)
    results = {}
    for name, service in services.items():
        service.start()
        assert service.process is not None
        try:
            url = f"{service.url}/healthz"
            wrk(url, load, seconds=1)
            before = workers_cpu_seconds(service.process.pid)
            result = wrk(url, load)
            cpu = workers_cpu_seconds(service.process.pid) - before
            results[name] = (result.rps, cpu / result.requests * 1e6)
        finally:
            service.stop()
    shutil.rmtree(workdir, ignore_errors=True)
    ceiling_rps, ceiling_us = results["ceiling"]
    print(f"{'app':10} {'req/s':>8} {'x':>5} {'us CPU/req':>10} {'x':>5}")
    for name, (rps, us) in results.items():
        print(f"{name:10} {rps:8.0f} {rps / ceiling_rps:5.2f} {us:10.1f} {ceiling_us / us:5.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000, help="per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--app", choices=APPS, help="measure this app in this process")
    parser.add_argument("--callgrind", action="store_true")
    parser.add_argument("--estimate-total", type=float, default=314.0, metavar="US")
    parser.add_argument("--wrk", type=float, metavar="SECONDS", help="under gunicorn and wrk")
    args = parser.parse_args()
    if args.wrk:
        _report_wrk(args.wrk)
        return
    if args.app:
        result = _serve(args.app, args.requests, args.rounds, args.callgrind)
        print(json.dumps(result))
        return
    if args.callgrind:
        _report_instructions(args.requests)
        return
    results = {}
    for name in APPS:
        out = subprocess.run(
            [sys.executable, "-m", "bench.healthz_cost", "--app", name]
            + ["--requests", str(args.requests), "--rounds", str(args.rounds)],
            check=True,
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        ).stdout
        results[name] = json.loads(out.splitlines()[-1])
    ceiling = results["ceiling"]["us"]
    common = args.estimate_total - ceiling  # gunicorn and the kernel, the same for every app
    print(f"{'app':10} {'us CPU/req':>10} {'gap':>7} {'ratio':>6} {'est. ratio':>10}  rounds")
    for name in APPS:
        us = results[name]["us"]
        rounds = " ".join(f"{r:.1f}" for r in results[name]["rounds"])
        print(
            f"{name:10} {us:10.1f} {us - ceiling:7.1f} {ceiling / us:6.2f}"
            f" {args.estimate_total / (common + us):10.2f}  {rounds}"
        )


if __name__ == "__main__":
    main()
