import pytest

from auth_server import create_app
from tests.processes import GunicornService, free_port, settings_env
from tests.support import (
    REPORTS,
    REPORTS_API,
    AuthServer,
    auth_settings,
    seed,
    start_auth_server,
    start_resource_server,
)


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


@pytest.fixture
def gunicorn_auth(make_database_url, tmp_path):
    """Factory: a seeded authorization server under gunicorn (several workers), as deployed."""
    started = []

    def start(workers: int = 3, **overrides) -> AuthServer:
        port = free_port()
        settings = auth_settings(make_database_url("auth"), f"http://127.0.0.1:{port}", **overrides)
        seed(create_app(settings, create_tables=True))
        service = GunicornService(
            "auth_server", settings_env(settings), workers=workers, port=port
        ).start()
        started.append(service)
        return AuthServer(url=service.url, app=None, settings=settings, server=service)

    yield start
    for service in started:
        service.stop()
