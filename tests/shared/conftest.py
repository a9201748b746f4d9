"""The protection-library tests use the same stand-in introspection endpoint as the
resource-server tests (see tests/resource_server/fake_as.py for why a stand-in)."""

from tests.resource_server.conftest import (  # noqa: F401 - fixtures, used by name
    fake_as,
    fake_as_server,
    stoppable_fake_as,
)
