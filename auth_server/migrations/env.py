"""Alembic environment of the auth_server: migrates the database of the app in context."""

from shared.service.migrations import run_migrations

run_migrations()
