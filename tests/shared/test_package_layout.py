"""shared/ is one subpackage per audience: the client library a third-party app installs on its
own pulls in neither Flask nor SQLAlchemy, and nothing sits loose at shared/'s root."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
SUBPACKAGES = ("client", "guard", "protocol", "service")


@pytest.mark.live  # runs python in a subprocess: a fresh sys.modules, not this test run's
def test_client_library_imports_neither_flask_nor_sqlalchemy() -> None:
    probe = (
        "import sys\n"
        "from shared.client import JWKSValidator, KeyringTokenStore, OAuthClient, DPoPKey\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('flask', 'werkzeug', 'sqlalchemy', 'flask_sqlalchemy'))\n"
        "print(','.join(heavy))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SHARED.parent)}
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_shared_root_holds_only_the_subpackages() -> None:
    loose = sorted(p.name for p in SHARED.glob("*.py") if p.name != "__init__.py")
    assert loose == []
    packages = sorted(p.parent.name for p in SHARED.glob("*/__init__.py"))
    assert packages == sorted(SUBPACKAGES)


@pytest.mark.parametrize("subpackage", SUBPACKAGES)
def test_each_subpackage_says_what_it_is_for(subpackage: str) -> None:
    source = (SHARED / subpackage / "__init__.py").read_text()
    assert ast.get_docstring(ast.parse(source))


def test_client_library_ships_its_type_hints() -> None:
    assert (SHARED / "client" / "py.typed").is_file()


# Which of shared's subpackages each one may import: the primitives stand alone, the client
# library needs only them, and nothing of shared/ imports the services.
MAY_IMPORT = {
    "protocol": {"protocol"},
    "client": {"client", "protocol"},
    "guard": {"guard", "protocol", "service"},
    "service": {"service", "protocol"},
}


def _shared_imports(path: Path) -> set[str]:
    """The modules under shared/ and the services that a file imports, anywhere in it."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n.split(".")[0] in ("shared", "auth_server", "resource_server")}


@pytest.mark.parametrize("subpackage", SUBPACKAGES)
def test_subpackage_imports_only_the_layers_below_it(subpackage: str) -> None:
    reached = {
        (path.name, name)
        for path in (SHARED / subpackage).glob("*.py")
        for name in _shared_imports(path)
    }
    outside = sorted(
        (file, name)
        for file, name in reached
        if name.split(".")[0] != "shared"
        or (len(name.split(".")) > 1 and name.split(".")[1] not in MAY_IMPORT[subpackage])
    )
    assert outside == []
