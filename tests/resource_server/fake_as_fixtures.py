"""The stand-in introspection endpoint as fixtures, for the resource-server and the
protection-library tests (a plugin: tests/conftest.py names it in `pytest_plugins`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.live_server import LiveServer
from tests.resource_server.fake_as import (
    FakeAuthorizationServer,
    fake_as_on,
    shared_fake_as_server,
)


@pytest.fixture(scope="session")
def fake_as_server() -> Iterator[LiveServer]:
    with shared_fake_as_server() as server:
        yield server


@pytest.fixture
def fake_as(fake_as_server) -> Iterator[FakeAuthorizationServer]:
    fake = fake_as_on(fake_as_server)
    yield fake
    fake.release.set()  # let any handler still sleeping finish now


@pytest.fixture
def stoppable_fake_as(serve) -> Iterator[FakeAuthorizationServer]:
    """A stand-in on a server of its own, for tests that stop it (connection refused)."""
    fake = fake_as_on(serve(), own_server=True)
    yield fake
    fake.release.set()
