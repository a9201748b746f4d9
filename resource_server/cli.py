"""`flask --app resource_server init-db`: create the tables until migrations exist."""

from __future__ import annotations

import click
from flask import Flask

from resource_server.db import db


def register_cli(app: Flask) -> None:
    @app.cli.command("init-db")
    def init_db_command() -> None:
        """Create the resource server's tables if they do not exist."""
        # Stopgap: Alembic migrations (a later issue) will replace create_all.
        db.create_all()
        click.echo("resource server tables created")
