"""The authorization server's SQLAlchemy handle; the engine is bound per app in create_app."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, cast

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase, Session

from shared.service.database import NAMING_CONVENTION


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


if TYPE_CHECKING:

    class _TypedSQLAlchemy(SQLAlchemy):
        # db.session is a scoped_session, which proxies every Session method to the current
        # context's session; the stores take a Session, so type-check it as one.
        session: Session  # type: ignore[assignment]


db = cast("_TypedSQLAlchemy", SQLAlchemy(model_class=Base))


@contextmanager
def rolled_back_on_error(session: Session) -> Iterator[None]:
    """Roll the session back as soon as its block raises, before any outer `with` cleans up.

    The login throttle gives its units back on its own connection when a password check
    raises; on SQLite that write would wait behind this session's still-open write lock (a
    failed password change has already updated rows) until the busy timeout.
    """
    try:
        yield
    except BaseException:
        session.rollback()
        raise
