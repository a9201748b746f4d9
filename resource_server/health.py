"""Liveness (the process answers) and readiness (its database answers) for orchestrators."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from resource_server.db import db
from shared.protocol.oauth_syntax import NO_STORE

log = logging.getLogger("tessera.resource")

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    # Cache-Control: no-store and Pragma come from the request bookkeeping, as on every answer
    # of this service (resource_server/__init__.py); setting them here too was done twice.
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int, dict[str, str]]:
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        db.session.rollback()
        log.warning("readiness check failed: database unavailable: %s", type(exc).__name__)
        retry_after = current_app.extensions["tessera_settings"].introspection_retry_after
        headers = {"Retry-After": str(retry_after), **NO_STORE}
        return jsonify(status="unavailable", error="temporarily_unavailable"), 503, headers
    return jsonify(status="ok"), 200, NO_STORE
