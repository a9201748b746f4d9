"""Services as real processes, started the way production starts them: gunicorn with the
repository's gunicorn.conf.py, settings in the environment."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from shared.service.settings import PROJECT_ROOT, ServiceSettings

# Logs and metric files of every service a test run starts; removed when the run ends.
_WORKDIR = tempfile.TemporaryDirectory(prefix="tessera-tests-")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def settings_env(settings: ServiceSettings) -> dict[str, str]:
    """The environment that reproduces `settings` in another process."""
    env = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        env[name.upper()] = ("1" if value else "0") if isinstance(value, bool) else str(value)
    return env


class GunicornService:
    """`gunicorn -c gunicorn.conf.py <module>.wsgi:app` on a free loopback port."""

    def __init__(
        self,
        module: str,
        env: dict[str, str],
        *,
        workers: int = 2,
        port: int | None = None,
        python_m: bool = False,
    ):
        self.module = module
        # python_m: started as `python -m <module> serve`, the entry point beside gunicorn's
        self.python_m = python_m
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # /metrics is served by the master on a port of its own (METRICS_BIND), never self.url
        self.metrics_port = free_port()
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AUTH_", "RESOURCE_"))},
            # idle keep-alive connections would hold a graceful stop for the whole timeout
            "GUNICORN_GRACEFUL_TIMEOUT": "2",
            **env,
            "GUNICORN_BIND": f"127.0.0.1:{self.port}",
            "GUNICORN_WORKERS": str(workers),
            "METRICS_BIND": f"127.0.0.1:{self.metrics_port}",
        }
        self.env.setdefault(
            "PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="metrics-", dir=_WORKDIR.name)
        )
        # kept open for the life of the service: gunicorn writes into it
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115
            prefix=f"{module}-", suffix=".log", delete=False, dir=_WORKDIR.name
        )
        self.log_path = Path(self._log.name)
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> GunicornService:
        config = str(PROJECT_ROOT / "gunicorn.conf.py")
        command = (
            [sys.executable, "-m", self.module, "serve", "--config", config]
            if self.python_m
            else [sys.executable, "-m", "gunicorn", "-c", config, f"{self.module}.wsgi:app"]
        )
        self.process = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill() takes the workers too
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.module} exited at start:\n{self.logs()}")
            try:
                if requests.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass  # not listening yet, or the workers are still booting
            time.sleep(0.1)
        raise RuntimeError(f"{self.module} did not answer within {timeout} s:\n{self.logs()}")

    def kill(self) -> None:
        """SIGKILL the master and every worker: a crash, not a shutdown."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def logs(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")
