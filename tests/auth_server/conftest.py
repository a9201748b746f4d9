import pytest

from tests.support import start_auth_server


@pytest.fixture
def auth(serve, make_database_url):
    """A seeded authorization server on a real port, on SQLite and (if configured) PostgreSQL."""
    return start_auth_server(serve, make_database_url("auth"))
