"""The resource server's SQLAlchemy handle, bound to its own database per app in create_app."""

from __future__ import annotations

from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

from shared.service.database import (
    NAMING_CONVENTION,
    configure_engine,
    end_sessions_without_failing,
    engine_options,
)
from shared.service.settings import ServiceSettings


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)


def init_db(app: Flask, url: str, settings: ServiceSettings) -> None:
    app.config["SQLALCHEMY_DATABASE_URI"] = url
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(url, settings)
    db.init_app(app)
    end_sessions_without_failing(app, db.session)
    with app.app_context():
        # Before the first connection, so every pooled connection gets the SQLite pragmas.
        configure_engine(db.engine, settings)
