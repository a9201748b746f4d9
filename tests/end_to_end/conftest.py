import pytest

from tests.support import REPORTS, REPORTS_API, start_auth_server, start_resource_server


@pytest.fixture
def auth(serve, make_database_url):
    return start_auth_server(serve, make_database_url("auth"))


@pytest.fixture
def notes_api(serve, make_database_url, auth):
    """The notes API (audience urn:tessera:notes) on its own database and port."""
    return start_resource_server(serve, make_database_url("notes"), auth)


@pytest.fixture
def reports_api(serve, make_database_url, auth):
    """A second resource server identity (audience urn:tessera:reports)."""
    return start_resource_server(
        serve,
        make_database_url("reports"),
        auth,
        credentials=REPORTS_API,
        resource_audience=REPORTS,
    )
