"""What the account page shows and does about a user's logins: the active ones (one refresh
family each), signing one out, and the account's recent security events in plain words."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from auth_server import audit
from auth_server.models import AuditEvent, Client, RefreshFamily, RefreshToken, User
from auth_server.revocation import revoke_family

# The events of an account its owner can act on, newest first on the page.
SHOWN_EVENTS = (
    "login_succeeded",
    "login_failed",
    "refresh_token_reuse_detected",
    "password_changed",
    "user_tokens_revoked",
    "token_revoked",
    "consent_granted",
    "consent_withdrawn",
)
RECENT_EVENTS = 20
SIGNED_OUT_BY_USER = "signed_out_by_user"
MAX_ROW_ID = 2**31 - 1


@dataclass(frozen=True)
class Login:
    family_id: int
    app_name: str
    started_at: int
    last_used_at: int
    ip: str | None
    browser: str


@dataclass(frozen=True)
class SecurityEvent:
    at: int
    text: str
    ip: str | None
    warning: bool


def active_logins(session: Session, user_id: int, now: int) -> list[Login]:
    """Logins that can still refresh: not revoked, within their lifetime, with a live token."""
    live_token = exists().where(
        RefreshToken.family_id == RefreshFamily.id,
        RefreshToken.consumed_at.is_(None),
        RefreshToken.expires_at > now,
    )
    families = session.scalars(
        select(RefreshFamily)
        .where(
            RefreshFamily.user_id == user_id,
            RefreshFamily.revoked_at.is_(None),
            RefreshFamily.expires_at > now,
            live_token,
        )
        .order_by(RefreshFamily.last_used_at.desc(), RefreshFamily.id.desc())
    ).all()
    return [
        Login(
            family_id=f.id,
            app_name=f.client.name or f.client.client_id,
            started_at=f.created_at,
            last_used_at=f.last_used_at,
            ip=f.ip,
            browser=describe_user_agent(f.user_agent),
        )
        for f in families
    ]


def sign_out_login(session: Session, user: User, family_id: int, now: int, ip: str | None) -> bool:
    """Revoke one of the user's own logins (its access tokens die with it: introspection
    treats a revoked family's tokens as revoked). False if it is not the user's or already
    gone. Commits."""
    if not 0 < family_id <= MAX_ROW_ID:
        return False  # no such row, and too large for the column's type
    family = session.get(RefreshFamily, family_id)
    if family is None or family.user_id != user.id:
        return False
    if not revoke_family(session, family_id, SIGNED_OUT_BY_USER, now):
        session.rollback()
        return False
    audit.record(
        session,
        "token_revoked",
        actor=f"user:{user.subject}",
        at=now,
        user_id=user.id,
        client_id=family.client.client_id,
        ip=ip,
        token_use="refresh_token",
        family=family_id,
        reason=SIGNED_OUT_BY_USER,
    )
    session.commit()
    return True


def recent_events(session: Session, user_id: int) -> list[SecurityEvent]:
    rows = session.scalars(
        select(AuditEvent)
        .where(AuditEvent.user_id == user_id, AuditEvent.event.in_(SHOWN_EVENTS))
        .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        .limit(RECENT_EVENTS)
    ).all()
    client_ids = {r.client_id for r in rows if r.client_id}
    names = {
        c.client_id: c.name or c.client_id
        for c in session.scalars(select(Client).where(Client.client_id.in_(client_ids)))
    }
    events = []
    for row in rows:
        detail = json.loads(row.detail or "{}")
        text = _describe(row.event, names.get(row.client_id or "", row.client_id), detail)
        if text is not None:
            warning = row.event in ("login_failed", "refresh_token_reuse_detected")
            events.append(SecurityEvent(row.at, text, row.ip, warning))
    return events


def _describe(event: str, app: str | None, detail: dict) -> str | None:
    where = f" to {app}" if app else " to this account page"
    if event == "login_succeeded":
        return f"Signed in{where}"
    if event == "login_failed":
        if detail.get("reason") == "disabled":
            return f"Sign-in{where} refused: the account is disabled"
        return f"Failed sign-in{where}: wrong password"
    if event == "refresh_token_reuse_detected":
        return (
            f"A copied session of {app or 'an app'} was used; that session was signed out "
            "to protect the account"
        )
    if event == "password_changed":
        return "Password changed; every session was signed out"
    if event == "user_tokens_revoked":
        if detail.get("reason") == "signed_out_everywhere":
            return "Signed out everywhere"
        return "Every session was signed out by an administrator"
    if event == "token_revoked":
        if detail.get("reason") == SIGNED_OUT_BY_USER:
            return f"Signed out of {app} from this page"
        return None  # an app signing itself out is routine, not a security event
    if event == "consent_granted":
        return f"Allowed {app} to access the account"
    if event == "consent_withdrawn":
        return f"Removed the access of {app}"
    return None


_BROWSERS = (
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("Chrome/", "Chrome"),
    ("Chromium/", "Chromium"),
    ("Safari/", "Safari"),
    ("curl/", "curl"),
    ("python-requests/", "a Python program"),
)
_SYSTEMS = (
    ("Android", "Android"),
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
)
_HEADLESS = re.compile(r"Headless", re.I)


def describe_user_agent(user_agent: str | None) -> str:
    """'Chrome on Linux' from a User-Agent header: enough to recognise one's own device."""
    if not user_agent:
        return "Unknown browser"
    browser = next((name for token, name in _BROWSERS if token in user_agent), None)
    system = next((name for token, name in _SYSTEMS if token in user_agent), None)
    if browser and _HEADLESS.search(user_agent):
        browser = f"headless {browser}"
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or "Unknown browser"
