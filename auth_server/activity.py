"""Sliding expiration: a login stays alive while its access tokens are in use.

Introspection answering `active: true` for a user's access token is activity of that login (its
refresh family), and the refresh grant's idle check counts from the later of the last refresh
and the last activity (tokens.py). REFRESH_TOKEN_MAX_TTL still ends every login.

Introspection is the hot path, so activity is written at most once per login per
REFRESH_ACTIVITY_INTERVAL: one conditional UPDATE that touches no row when this or another
worker already recorded it within the interval, and that no lock is held for beyond.
"""

from __future__ import annotations

from sqlalchemy import bindparam, update
from sqlalchemy.orm import Session

from auth_server.models import RefreshFamily
from shared.service.database import affected_rows

# Built once: compiled once, reused by every introspection.
_RECORD_ACTIVITY = (
    update(RefreshFamily)
    .where(
        RefreshFamily.id == bindparam("family"),
        RefreshFamily.last_active_at <= bindparam("stale_before"),
    )
    .values(last_active_at=bindparam("now"))
    .execution_options(synchronize_session=False)
)


def activity_is_due(last_active_at: int | None, now: int, interval: int) -> bool:
    """Whether a login last seen active at `last_active_at` is due a write at `now`. None: the
    token belongs to no login (client_credentials)."""
    return last_active_at is not None and last_active_at <= now - interval


def record_login_activity(
    session: Session, family_id: int | None, last_active_at: int | None, now: int, interval: int
) -> bool:
    """Record that the login `family_id`, last seen active at `last_active_at` (as read with
    the token), was used at `now`, unless that was done less than `interval` seconds ago.
    True if it wrote (and committed: a no-op under PostgreSQL autocommit).

    Most calls return at the first test without a statement: the time read with the token is
    recent. The UPDATE re-checks it, so workers that all saw it stale write it once."""
    if family_id is None or not activity_is_due(last_active_at, now, interval):
        return False
    stale_before = now - interval
    result = session.execute(
        _RECORD_ACTIVITY, {"family": family_id, "stale_before": stale_before, "now": now}
    )
    session.commit()
    return affected_rows(result) == 1
