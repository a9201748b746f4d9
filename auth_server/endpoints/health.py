"""Liveness (`/healthz`: the process answers) and readiness (`/readyz`: its database too)."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from auth_server.db import db
from shared.service.settings import ConfigurationError

bp = Blueprint("health", __name__)
log = logging.getLogger("tessera.auth")


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        db.session.rollback()
        log.warning("readiness check failed: %s", exc.__class__.__name__)
        response = jsonify(status="unavailable", database="unreachable")
        response.status_code = 503
        response.headers["Retry-After"] = "5"
        return response
    try:
        current_app.extensions["tessera"].keyring.signing_key()
    except (ConfigurationError, SQLAlchemyError) as exc:
        log.error("readiness check failed: signing keys unusable: %s", exc)
        response = jsonify(status="unavailable", database="ok", signing_keys="unusable")
        response.status_code = 503
        response.headers["Retry-After"] = "5"
        return response
    return jsonify(status="ok", database="ok", signing_keys="ok")
