"""The body of both services' Alembic ``env.py``: migrate the database of the Flask app in
context, through that app's own engine.

The engine is the one ``create_app`` configured, so the migration connects exactly as the
service does: the SQLite pragmas, and on PostgreSQL any ``options`` of the URL (a
``search_path`` puts ``alembic_version`` and every table in that schema).

Logging is left to whoever runs the migration: Alembic's usual ``fileConfig`` call would
replace the root logger's handlers of the process (a test run's, a service's). Only when
nothing is configured (the ``flask ... db`` command line) does Alembic's progress go to stderr.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from alembic import context
from flask import current_app

log = logging.getLogger("alembic.env")


def run_migrations() -> None:
    config = context.config
    migrate = current_app.extensions["migrate"]
    engine = migrate.db.engine
    metadata = migrate.db.metadata
    _log_to_stderr_if_unconfigured()

    if context.is_offline_mode():
        # `flask db upgrade --sql`: print the SQL instead of running it.
        context.configure(
            url=engine.url.render_as_string(hide_password=False),
            target_metadata=metadata,
            literal_binds=True,
            **migrate.configure_args,
        )
        with context.begin_transaction():
            context.run_migrations()
        return

    def skip_empty_autogenerate(_context: Any, _revision: Any, directives: list[Any]) -> None:
        if getattr(config.cmd_opts, "autogenerate", False) and directives[0].upgrade_ops.is_empty():
            directives[:] = []
            log.info("No changes in schema detected.")

    configure_args = dict(migrate.configure_args)
    configure_args.setdefault("process_revision_directives", skip_empty_autogenerate)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata, **configure_args)
        with context.begin_transaction():
            context.run_migrations()


def _log_to_stderr_if_unconfigured() -> None:
    alembic_log = logging.getLogger("alembic")
    configured = alembic_log.handlers + logging.getLogger().handlers
    if any(not isinstance(handler, logging.NullHandler) for handler in configured):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)-5.5s [%(name)s] %(message)s"))
    alembic_log.addHandler(handler)
    alembic_log.setLevel(logging.INFO)
