"""The protection-library tests use the same stand-in introspection endpoint as the
resource-server tests (tests/resource_server/fake_as.py says why a stand-in); its fixtures come
from the plugin tests/resource_server/fake_as_fixtures.py, named in tests/conftest.py."""
