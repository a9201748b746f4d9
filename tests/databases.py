"""The test databases: SQLite always, PostgreSQL as well when TEST_DATABASE_URL is set."""

from __future__ import annotations

import os

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
DATABASE_BACKENDS = ["sqlite", "postgresql"] if TEST_DATABASE_URL else ["sqlite"]

_ADMIN_ENGINE: Engine | None = None


def admin_engine() -> Engine:
    """One small pool on TEST_DATABASE_URL that creates and drops the per-test schemas."""
    global _ADMIN_ENGINE
    if _ADMIN_ENGINE is None:
        _ADMIN_ENGINE = create_engine(TEST_DATABASE_URL, pool_size=1)
    return _ADMIN_ENGINE
