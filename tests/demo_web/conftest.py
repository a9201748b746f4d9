import pytest

from tests.demo_web.support import start_demo_web
from tests.support import FakeClock, start_auth_server, start_resource_server


@pytest.fixture
def clock():
    """The authorization server's clock: advancing it expires the access tokens it issued."""
    return FakeClock()


@pytest.fixture
def auth(serve, make_database_url, clock):
    return start_auth_server(serve, make_database_url("auth"), clock=clock)


@pytest.fixture
def notes_api(serve, make_database_url, auth):
    return start_resource_server(serve, make_database_url("notes"), auth)


@pytest.fixture
def demo_web(serve, auth, notes_api, tmp_path):
    return start_demo_web(serve, auth, notes_api, tmp_path)
