"""The OpenAPI documents of both services describe exactly the routes they serve, and each
service serves its own at /openapi.json."""

from __future__ import annotations

import pytest
import schemathesis

import resource_server
from auth_server import create_app as create_auth_app
from resource_server.settings import ResourceSettings
from shared.service.openapi import load_document
from tests.support import auth_settings

# Flask answers these for every rule by itself; they are not operations of ours.
AUTOMATIC_METHODS = {"HEAD", "OPTIONS"}
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def _auth_app(tmp_path):
    return create_auth_app(
        auth_settings(f"sqlite:///{tmp_path / 'auth.sqlite3'}", "http://127.0.0.1:9")
    )


def _resource_app(tmp_path):
    return resource_server.create_app(
        ResourceSettings(
            resource_database_url=f"sqlite:///{tmp_path / 'notes.sqlite3'}",
            auth_server_url="http://127.0.0.1:9",
            resource_client_id="notes-api",
            resource_client_secret="notes-api-secret",
        )
    )


APPS = {"auth_server": _auth_app, "resource_server": _resource_app}


def _openapi_path(rule: str) -> str:
    """`/api/notes/<int:note_id>` -> `/api/notes/{note_id}`."""
    parts = []
    for segment in rule.split("/"):
        if segment.startswith("<") and segment.endswith(">"):
            segment = "{" + segment[1:-1].rpartition(":")[2] + "}"
        parts.append(segment)
    return "/".join(parts)


def _routes(app) -> set[tuple[str, str]]:
    return {
        (_openapi_path(rule.rule), method)
        for rule in app.url_map.iter_rules()
        for method in rule.methods - AUTOMATIC_METHODS
    }


def _documented(document: dict) -> set[tuple[str, str]]:
    return {
        (path, method.upper())
        for path, item in document["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


@pytest.mark.parametrize("package", sorted(APPS))
def test_document_lists_exactly_the_routes_of_the_app(package, tmp_path):
    app = APPS[package](tmp_path)
    routes, documented = _routes(app), _documented(load_document(package))
    assert routes - documented == set(), "routes without documentation"
    assert documented - routes == set(), "documented operations the app does not serve"


@pytest.mark.parametrize("package", sorted(APPS))
def test_document_is_openapi_3_1_with_responses_for_every_operation(package):
    document = load_document(package)
    assert document["openapi"].startswith("3.1.")
    schema = schemathesis.openapi.from_dict(document)
    schema.validate()  # against the OpenAPI 3.1 meta-schema; raises on the first error
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == len(_documented(document))
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                assert operation["responses"], f"{method} {path} documents no response"


@pytest.mark.parametrize("package", sorted(APPS))
def test_service_serves_its_document_at_openapi_json(package, tmp_path):
    response = APPS[package](tmp_path).test_client().get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == load_document(package)
