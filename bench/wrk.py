"""Run wrk (the Debian package) against one URL and read its summary line (wrk/request.lua)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "wrk" / "request.lua"


@dataclass(frozen=True)
class Load:
    """What wrk sends: -t threads, -c connections in all, for `seconds`."""

    threads: int = 2
    connections: int = 16
    seconds: float = 10.0
    timeout_s: int = 5


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int

    def as_dict(self) -> dict:
        return asdict(self)


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (Debian's wrk 4.1)")
    return path


def wrk(
    url: str,
    load: Load,
    *,
    method: str = "GET",
    body: str = "",
    headers: tuple[tuple[str, str], ...] = (),
    seconds: float | None = None,
) -> WrkResult:
    duration = seconds if seconds is not None else load.seconds
    command = [
        require_wrk(),
        f"-t{load.threads}",
        f"-c{load.connections}",
        f"-d{max(1, round(duration))}s",
        "--latency",
        "--timeout",
        f"{load.timeout_s}s",
        "-s",
        str(SCRIPT),
    ]
    for name, value in headers:
        command += ["-H", f"{name}: {value}"]
    command.append(url)
    env = {**os.environ, "WRK_METHOD": method, "WRK_BODY": body}
    finished = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=duration + 60, check=False
    )
    line = next((ln for ln in finished.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if finished.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({finished.returncode}): {finished.stderr[-2000:]}")
    data = json.loads(line.removeprefix("WRK_JSON "))
    return WrkResult(
        requests=data["requests"],
        duration_s=data["duration_s"],
        rps=data["rps"],
        p50_ms=data["p50_ms"],
        p90_ms=data["p90_ms"],
        p99_ms=data["p99_ms"],
        max_ms=data["max_ms"],
        non_2xx=data["err_status"],
        socket_errors=data["err_connect"]
        + data["err_read"]
        + data["err_write"]
        + data["err_timeout"],
    )
