"""`GET /openapi.json`: the service's OpenAPI 3.1 document, kept in the repository as YAML next
to the service's code (auth_server/openapi.yaml, resource_server/openapi.yaml) and packaged
with it. tests/test_openapi_documents.py checks it against the routes; tests/fuzz/ fuzzes the
running service from it."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import yaml
from flask import Flask, Response

DOCUMENT_NAME = "openapi.yaml"
ROUTE = "/openapi.json"


def load_document(package: str) -> dict[str, Any]:
    """The OpenAPI document packaged with `package`, parsed."""
    text = resources.files(package).joinpath(DOCUMENT_NAME).read_text(encoding="utf-8")
    document: dict[str, Any] = yaml.safe_load(text)
    return document


def init_app(app: Flask, package: str) -> None:
    """Serve `package`'s document at /openapi.json. Serialized once, at start-up: it is static."""
    body = json.dumps(load_document(package))

    def openapi() -> Response:
        response = Response(body, mimetype="application/json")
        response.headers["Cache-Control"] = "public, max-age=3600"
        return response

    app.add_url_rule(ROUTE, "openapi", openapi, methods=["GET"])
