"""Resource-server commands. The schema is Alembic's (resource_server/migrations):
`flask --app resource_server db upgrade` creates or updates it."""

from __future__ import annotations

import click
import flask_migrate
from flask import Flask


def register_cli(app: Flask) -> None:
    @app.cli.command("init-db")
    def init_db_command() -> None:
        """Deprecated alias of `flask --app resource_server db upgrade`."""
        click.echo("init-db is deprecated: running `flask --app resource_server db upgrade`")
        flask_migrate.upgrade()
