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
