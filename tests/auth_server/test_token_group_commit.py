"""Group commit of client_credentials tokens on PostgreSQL (auth_server/group_commit.py,
protocol/client_credentials.py write_token_batch): a batch of several tokens is one statement
whose epoch guard refuses exactly the tokens of clients whose epoch moved, and requests that
arrive while a statement is in flight are answered only once their own batch has committed."""

from __future__ import annotations

import threading
import time
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select, update

from auth_server import create_app
from auth_server.clients import register_client
from auth_server.db import db
from auth_server.group_commit import GroupCommit
from auth_server.models import AccessToken, AuditEvent, Client
from auth_server.protocol.client_credentials import write_token_batch
from shared.protocol.basic_auth import basic_credentials_header
from tests.support import NOTES, NOTES_API, SERVICE_APP, FakeClock, auth_settings, seed

ISSUER = "http://127.0.0.1:9"
PARTNER_APP = ("partner-app", "partner-app-secret")


@pytest.fixture
def app(make_database_url, database_backend):
    if database_backend != "postgresql":
        pytest.skip("tokens are group-committed on PostgreSQL; SQLite writes one at a time")
    application = create_app(
        # Stored client_credentials tokens: self-contained ones write no token row to batch.
        auth_settings(make_database_url("auth"), ISSUER, client_credentials_tokens="stored"),
        create_tables=True,
        clock=FakeClock(),
    )
    seed(application)
    with application.app_context():
        register_client(
            db.session,
            PARTNER_APP[0],
            secret=PARTNER_APP[1],
            grant_types=["client_credentials"],
            scopes=["notes:read"],
            audiences=[NOTES],
        )
        db.session.commit()
    return application


def _row(client: Client, jti: str, epoch: int) -> dict:
    return {
        "jti": jti,
        "token_hash": f"{jti:0>64}",
        "client_pk": client.id,
        "scope": "notes:read",
        "audience": NOTES,
        "issued_at": 1_000,
        "expires_at": 1_300,
        "dpop_jkt": None,
        "token_epoch": epoch,
        "at": 1_000,
        "event": "token_issued",
        "actor": f"client:{client.client_id}",
        "audit_client_id": client.client_id,
        "ip": "127.0.0.1",
        "detail": f'{{"grant_type": "client_credentials", "jti": "{jti}"}}',
    }


def test_a_batch_writes_the_tokens_whose_epoch_holds_and_refuses_the_others(app):
    components = app.extensions["tessera"]
    with app.app_context():
        service = db.session.scalar(select(Client).where(Client.client_id == SERVICE_APP[0]))
        partner = db.session.scalar(select(Client).where(Client.client_id == PARTNER_APP[0]))
        db.session.execute(
            update(Client).where(Client.id == partner.id).values(token_epoch=Client.token_epoch + 1)
        )
        db.session.commit()
        rows = [
            _row(service, "s1", service.token_epoch),
            _row(partner, "p-stale", partner.token_epoch - 1),
            _row(service, "s2", service.token_epoch),
            _row(partner, "p-current", partner.token_epoch),
            _row(service, "s-stale", service.token_epoch + 5),
        ]
        db.session.rollback()

    assert write_token_batch(components.reader, rows) == [True, False, True, True, False]

    with app.app_context():
        assert set(db.session.scalars(select(AccessToken.jti))) == {"s1", "s2", "p-current"}
        audited = db.session.scalars(
            select(AuditEvent.detail)
            .where(AuditEvent.event == "token_issued")
            .order_by(AuditEvent.id)
        ).all()
        # one audit row per written token, in the order the batch held them
        assert [detail.split('"jti": "')[1].rstrip('"}') for detail in audited] == [
            "s1",
            "s2",
            "p-current",
        ]


def test_requests_arriving_during_a_write_share_the_next_statement_and_are_known_at_once(app):
    components = app.extensions["tessera"]
    first_started, release = threading.Event(), threading.Event()
    batches: list[int] = []

    def held_write(rows):
        batches.append(len(rows))
        if len(batches) == 1:
            first_started.set()
            assert release.wait(10)
        return write_token_batch(components.reader, rows)

    components.token_batches = GroupCommit(held_write)
    answers: list[tuple[int, dict]] = []

    def get_token(client: tuple[str, str]) -> None:
        response = app.test_client().post(
            "/oauth/token",
            data=urlencode({"grant_type": "client_credentials"}),
            headers={
                "Authorization": basic_credentials_header(*client),
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
        answers.append((response.status_code, response.get_json()))

    first = threading.Thread(target=get_token, args=(SERVICE_APP,))
    first.start()
    assert first_started.wait(10)
    later = [
        threading.Thread(target=get_token, args=(client,))
        for client in (SERVICE_APP, PARTNER_APP, SERVICE_APP, PARTNER_APP)
    ]
    for thread in later:
        thread.start()
    deadline = time.monotonic() + 10
    while len(components.token_batches._queue) < 4:  # noqa: SLF001
        assert time.monotonic() < deadline, "the requests did not queue behind the write"
        time.sleep(0.005)
    # Nobody was answered before the statement holding their token committed.
    assert answers == []
    release.set()
    for thread in (first, *later):
        thread.join(10)
    assert batches == [1, 4]
    assert [status for status, _ in answers] == [200] * 5

    introspector = app.test_client()
    for _, body in answers:
        verdict = introspector.post(
            "/oauth/introspect",
            data=urlencode({"token": body["access_token"]}),
            headers={
                "Authorization": basic_credentials_header(*NOTES_API),
                "Content-Type": "application/x-www-form-urlencoded",
            },
        ).get_json()
        assert verdict["active"] is True
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(AccessToken)) == 5
        issued_events = select(func.count()).where(AuditEvent.event == "token_issued")
        assert db.session.scalar(issued_events) == 5
