"""The authorization server's layers: the protocol code (auth_server/protocol/) does not know
Flask, and the web layer (auth_server/endpoints/) is reached only through the app factory."""

from __future__ import annotations

import ast
from pathlib import Path

AUTH_SERVER = Path(__file__).resolve().parents[2] / "auth_server"
ROOT = AUTH_SERVER.parent
# server.py subclasses Authlib's Flask integration (its requests are Flask's): the one module of
# the protocol package that may name Flask. The grants, endpoints, policy and errors may not.
FLASK_BOUND_PROTOCOL_MODULES = {"server.py"}
# The app factory registers the blueprints; nothing else reaches into the web layer.
MAY_IMPORT_ENDPOINTS = {AUTH_SERVER / "__init__.py"}


def _imported_modules(path: Path) -> set[str]:
    """Every module a file imports, anywhere in it (function-level imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def _flask_imports(path: Path) -> set[str]:
    return {n for n in _imported_modules(path) if n.split(".")[0] in ("flask", "werkzeug")}


def test_protocol_modules_import_no_flask() -> None:
    modules = sorted((AUTH_SERVER / "protocol").glob("*.py"))
    assert {p.name for p in modules} >= {"errors.py", "grants.py", "revocation.py", "pkce.py"}
    reached = {
        (path.name, name)
        for path in modules
        if path.name not in FLASK_BOUND_PROTOCOL_MODULES
        for name in _flask_imports(path)
    }
    assert reached == set()


def test_the_layering_check_sees_a_flask_import(tmp_path: Path) -> None:
    module = tmp_path / "view.py"
    module.write_text("def f():\n    from flask import request\n    return request\n")
    assert _flask_imports(module) == {"flask", "flask.request"}


def test_only_the_app_factory_and_the_web_layer_import_the_endpoints() -> None:
    sources = [
        p
        for top in ("auth_server", "resource_server", "shared", "bench", "scripts", "tests")
        for p in (ROOT / top).rglob("*.py")
    ]
    endpoints = AUTH_SERVER / "endpoints"
    importers = sorted(
        str(path.relative_to(ROOT))
        for path in sources
        if endpoints not in path.parents
        and path not in MAY_IMPORT_ENDPOINTS
        and any(
            name == "auth_server.endpoints" or name.startswith("auth_server.endpoints.")
            for name in _imported_modules(path)
        )
    )
    assert importers == []
