"""`python -m auth_server` / `python -m resource_server`: serve the service under gunicorn, or
run its operator CLI (the commands of `flask --app <service> ...`).

    python -m auth_server serve [--config gunicorn.conf.py] [gunicorn options...]
    python -m auth_server users list --json      # any `flask --app auth_server` command
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path

from flask import Flask

DEFAULT_GUNICORN_CONFIG = "gunicorn.conf.py"
USAGE = """\
usage: python -m {service} serve [--config FILE] [gunicorn options...]
       python -m {service} COMMAND ...   (the commands of `flask --app {service}`, see --help)

serve: run {service} under gunicorn with FILE (default: ./gunicorn.conf.py, the one in the
checkout and in the image's /app) and the settings in the environment.
"""


def main(service: str, argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["serve"]:
        serve(service, args[1:])
    if not args:
        sys.stderr.write(USAGE.format(service=service))
        raise SystemExit(2)
    from flask.cli import FlaskGroup

    FlaskGroup(name=f"python -m {service}", create_app=_app_factory(service)).main(
        args, prog_name=f"python -m {service}"
    )


def serve(service: str, args: list[str]) -> None:
    """Replace this process with gunicorn (PID 1 in a container keeps receiving the signals)."""
    config = DEFAULT_GUNICORN_CONFIG
    if args[:1] == ["--config"] and len(args) > 1:
        config, args = args[1], args[2:]
    if not Path(config).is_file():
        sys.stderr.write(f"no gunicorn configuration at {config!r}: pass --config FILE\n")
        raise SystemExit(2)
    command = [sys.executable, "-m", "gunicorn", "-c", config, *args, f"{service}.wsgi:app"]
    os.execv(sys.executable, command)  # noqa: S606 - a fixed program, arguments as a list


def _app_factory(service: str) -> Callable[[], Flask]:
    """The service's create_app, imported only when a command needs the app."""

    def create_app() -> Flask:
        app: Flask = importlib.import_module(service).create_app()
        return app

    return create_app
