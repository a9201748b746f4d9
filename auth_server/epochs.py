"""Revocation epochs: once a revoking call has returned, no token from a login that overlapped
it is alive (issue 12).

A password check and the INSERT of the tokens it earns are far apart (Argon2 takes a good part
of a second); a revocation that commits in between cannot see the tokens yet, so revoking rows
alone leaves them alive. Each user and each client therefore carries an integer `token_epoch`:

- a revoking operation FIRST increments it (`bump_*`: one UPDATE, which on PostgreSQL takes the
  row lock until commit), then revokes the rows, then commits;
- an issuing operation remembers the epoch it read together with the credentials (the user row
  with its password hash, the client record at client authentication, the code row), and
  before writing its tokens re-checks it (`guard`) under a lock that a concurrent revocation
  conflicts with: PostgreSQL `SELECT ... FOR SHARE` (logins of the same user share it, a
  revocation's UPDATE waits for it or is waited for; READ COMMITTED returns the latest committed
  value), SQLite a conditional UPDATE that changes nothing, which takes the database's single
  write lock and compares against the latest committed state in one statement.

If the epoch moved, the issuance rolls back and is refused. If it did not, the revocation cannot
commit its increment before this transaction commits, and its revoking UPDATEs, which run after
the increment, see the new tokens. Both sides take the user row before the client row and
before any token, family or code row, so they never deadlock.

Refresh is not guarded here: the refresh family's row lock already orders a refresh and every
revocation of its family (tokens.py), and locking the user row while holding the family row
would invert that order. Introspection reads none of this: it stays one indexed lookup.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from auth_server.models import Client, User
from shared.service.database import affected_rows

# Steps a service reports (see `Steps`); production passes no_steps.
Steps = Callable[[str], None]


def no_steps(_step: str) -> None:
    """Services report their steps ("read", "verified", "guarded", "written", "bumped",
    "revoked") to a callback; tests pass one that pauses there to drive interleavings."""


def bump_user_epoch(session: Session, user_id: int) -> None:
    session.execute(
        update(User)
        .where(User.id == user_id)
        .values(token_epoch=User.token_epoch + 1)
        .execution_options(synchronize_session=False)
    )


def bump_client_epoch(session: Session, client_pk: int) -> None:
    session.execute(
        update(Client)
        .where(Client.id == client_pk)
        .values(token_epoch=Client.token_epoch + 1)
        .execution_options(synchronize_session=False)
    )


def _unchanged(
    session: Session,
    model: type[User | Client],
    row_id: int,
    expected: int | None,
    *,
    asynchronous_commit: bool = False,
) -> bool:
    if session.get_bind().dialect.name == "sqlite":
        # Writing takes SQLite's write lock (BEGIN IMMEDIATE, shared/service/database.py), held to
        # the commit; the WHERE then reads the latest committed epoch.
        result = session.execute(
            update(model)
            .where(model.id == row_id, model.token_epoch == expected)
            .values(token_epoch=model.token_epoch)
            .execution_options(synchronize_session=False)
        )
        return affected_rows(result) == 1
    statement = _EPOCH_FOR_SHARE[model, asynchronous_commit]
    current = session.execute(statement, {"row_id": row_id}).first()
    return current is not None and current[0] == expected


def _epoch_for_share(model: type[User | Client], asynchronous_commit: bool):
    statement = (
        select(model.token_epoch).where(model.id == bindparam("row_id")).with_for_update(read=True)
    )
    if asynchronous_commit:
        # SET LOCAL synchronous_commit = off, in the same round trip (tokens.py says when).
        statement = statement.add_columns(func.set_config("synchronous_commit", "off", True))
    return statement


# Built once: every issuance runs one of them (store.py says why that matters).
_EPOCH_FOR_SHARE = {
    (model, asynchronous): _epoch_for_share(model, asynchronous)
    for model in (User, Client)
    for asynchronous in (False, True)
}


def user_epoch_unchanged(session: Session, user_id: int, expected: int | None) -> bool:
    """True if no revocation of the user committed since `expected` was read, and none can
    commit before this transaction does. None (no epoch was read) never matches."""
    return _unchanged(session, User, user_id, expected)


def client_epoch_unchanged(
    session: Session, client_pk: int, expected: int, *, asynchronous_commit: bool = False
) -> bool:
    """The same for a client; call it after user_epoch_unchanged (lock order: user, client).

    `asynchronous_commit`: on PostgreSQL, this transaction's COMMIT then returns without waiting
    for its WAL to reach the disk (visibility is unchanged; tokens.py `issue_client_token`)."""
    return _unchanged(session, Client, client_pk, expected, asynchronous_commit=asynchronous_commit)
