"""grant_type=client_credentials answers the same through its lean path
(auth_server/protocol/client_credentials.py) as through Authlib's grant, for every request shape:
status, every header, the body (the token's JOSE header and claims, all but the random jti and
signature), the rows stored and the audit events, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
from urllib.parse import urlencode

import pytest
from sqlalchemy import select, update

from auth_server import create_app
from auth_server.clients import register_client, rotate_client_secret
from auth_server.db import db
from auth_server.models import AccessToken, AuditEvent, Client
from shared.protocol.basic_auth import basic_credentials_header
from shared.protocol.digests import sha256_hex
from tests.dpop_support import DPoPKey
from tests.support import (
    DEMO_APP,
    NOTES,
    NOTES_API,
    OTHER_APP,
    REPORTS,
    SERVICE_APP,
    SPA_APP,
    FakeClock,
    auth_settings,
    seed,
)

ISSUER = "http://127.0.0.1:9"
TOKEN_URL = f"{ISSUER}/oauth/token"
WIDE_APP = ("wide-app", "wide-app-secret")
OFF_APP = ("off-app", "off-app-secret")
ROTATED_APP = ("rotated-app", "rotated-app-first-secret")
FORM = "application/x-www-form-urlencoded"


def _basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": basic_credentials_header(client_id, secret)}


def _raw_basic(text: bytes) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(text).decode()}


CC = [("grant_type", "client_credentials")]

# (name, form pairs, headers): every way a client_credentials request can be right or wrong.
SHAPES: list[tuple[str, list[tuple[str, str]], dict[str, str]]] = [
    ("basic", CC, _basic(*SERVICE_APP)),
    ("post", [*CC, ("client_id", SERVICE_APP[0]), ("client_secret", SERVICE_APP[1])], {}),
    (
        "basic, client_id in the form too",
        [*CC, ("client_id", SERVICE_APP[0])],
        _basic(*SERVICE_APP),
    ),
    ("basic and post", [*CC, ("client_secret", SERVICE_APP[1])], _basic(*SERVICE_APP)),
    ("basic, wrong secret", CC, _basic(SERVICE_APP[0], "wrong")),
    ("post, wrong secret", [*CC, ("client_id", SERVICE_APP[0]), ("client_secret", "no")], {}),
    ("post, empty secret", [*CC, ("client_id", SERVICE_APP[0]), ("client_secret", "")], {}),
    ("post, no secret", [*CC, ("client_id", SERVICE_APP[0])], {}),
    ("post, empty client_id", [*CC, ("client_id", ""), ("client_secret", "x")], {}),
    ("basic, unknown client", CC, _basic("nobody", "secret")),
    ("post, unknown client", [*CC, ("client_id", "nobody"), ("client_secret", "x")], {}),
    ("post, client_id of a bad shape", [*CC, ("client_id", "a b/c"), ("client_secret", "x")], {}),
    ("no credentials", CC, {}),
    ("basic, not base64", CC, {"Authorization": "Basic ***"}),
    ("basic, not UTF-8", CC, _raw_basic(b"\xff\xfe:\xff")),
    ("basic, no colon", CC, _raw_basic(b"service-app")),
    ("basic, empty secret", CC, _raw_basic(b"service-app:")),
    (
        "bearer header with post credentials",
        [*CC, ("client_id", SERVICE_APP[0])],
        {"Authorization": "Bearer abc"},
    ),
    (
        "empty Authorization header, post",
        [*CC, ("client_id", SERVICE_APP[0]), ("client_secret", SERVICE_APP[1])],
        {"Authorization": ""},
    ),
    ("public client, no secret", [*CC, ("client_id", SPA_APP)], {}),
    ("public client, a secret", [*CC, ("client_id", SPA_APP), ("client_secret", "x")], {}),
    ("public client, basic", CC, _basic(SPA_APP, "x")),
    ("disabled client", CC, _basic(*OFF_APP)),
    ("client without the grant", CC, _basic(*OTHER_APP)),
    ("resource server client", CC, _basic(*NOTES_API)),
    ("rotated: new secret", CC, _basic(ROTATED_APP[0], "rotated-app-second-secret")),
    ("rotated: previous secret in its overlap", CC, _basic(*ROTATED_APP)),
    ("scope subset", [*CC, ("scope", "notes:read")], _basic(*SERVICE_APP)),
    (
        "scope all, reordered, repeated",
        [*CC, ("scope", "notes:write notes:read notes:write")],
        _basic(*SERVICE_APP),
    ),
    ("scope empty", [*CC, ("scope", "")], _basic(*SERVICE_APP)),
    ("scope blank", [*CC, ("scope", "  ")], _basic(*SERVICE_APP)),
    ("scope too wide", [*CC, ("scope", "profile")], _basic(*SERVICE_APP)),
    ("scope malformed", [*CC, ("scope", "notes:read  notes:write")], _basic(*SERVICE_APP)),
    ("scope with a quote", [*CC, ("scope", 'a"b')], _basic(*SERVICE_APP)),
    ("resource allowed", [*CC, ("resource", NOTES)], _basic(*SERVICE_APP)),
    ("resource not allowed", [*CC, ("resource", REPORTS)], _basic(*SERVICE_APP)),
    ("resource relative", [*CC, ("resource", "notes")], _basic(*SERVICE_APP)),
    ("resource with a fragment", [*CC, ("resource", NOTES + "#x")], _basic(*SERVICE_APP)),
    ("resource, bad IPv6 host", [*CC, ("resource", "http://[::1")], _basic(*SERVICE_APP)),
    ("two resources", [*CC, ("resource", NOTES), ("resource", REPORTS)], _basic(*WIDE_APP)),
    (
        "two resources, one repeated",
        [*CC, ("resource", REPORTS), ("resource", NOTES), ("resource", REPORTS)],
        _basic(*WIDE_APP),
    ),
    ("wide client, every audience", CC, _basic(*WIDE_APP)),
    (
        "scope and resource both wrong",
        [*CC, ("scope", "profile"), ("resource", REPORTS)],
        _basic(*SERVICE_APP),
    ),
    ("unknown parameters", [*CC, ("foo", "bar"), ("state", "s")], _basic(*SERVICE_APP)),
    ("client of another grant, bad scope", [*CC, ("scope", "nope")], _basic(*OTHER_APP)),
    ("demo app", CC, _basic(*DEMO_APP)),
]


@pytest.fixture
def app(make_database_url):
    clock = FakeClock()
    settings = auth_settings(make_database_url("auth"), ISSUER, client_credentials_tokens="stored")
    application = create_app(settings, create_tables=True, clock=clock)
    seed(application)
    with application.app_context():
        for client_id, secret, audiences in (
            (*WIDE_APP, [NOTES, REPORTS]),
            (*OFF_APP, [NOTES]),
            (*ROTATED_APP, [NOTES]),
        ):
            register_client(
                db.session,
                client_id,
                secret=secret,
                grant_types=["client_credentials"],
                scopes=["notes:read"],
                audiences=audiences,
            )
        db.session.execute(
            update(Client).where(Client.client_id == OFF_APP[0]).values(disabled=True)
        )
        db.session.commit()
        rotate_client_secret(db.session, ROTATED_APP[0], overlap=3600, now=int(clock()))
        db.session.execute(
            update(Client)
            .where(Client.client_id == ROTATED_APP[0])
            .values(secret_hash=sha256_hex("rotated-app-second-secret"))
        )
        db.session.commit()
        application.extensions["tessera"].keyring.signing_key()
    return application


def _segments(token: str) -> tuple[dict, dict]:
    def decode(part: str) -> dict:
        return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))

    header, payload, _signature = token.split(".")
    return decode(header), decode(payload)


def _answer(app, lean: bool, form, headers: dict[str, str], dpop: DPoPKey | None = None):
    """What the endpoint answered, with what is random per token (jti, signature) named
    rather than given, and the rows the request stored."""
    components = app.extensions["tessera"]
    components.lean_client_credentials = lean
    headers = {"X-Request-ID": "lean-comparison", "Content-Type": FORM, **headers}
    if dpop is not None:
        headers["DPoP"] = dpop.proof("POST", TOKEN_URL, now=components.clock())
    with app.app_context():
        tokens_before = set(db.session.scalars(select(AccessToken.jti)))
        audit_before = (
            db.session.scalar(select(AuditEvent.id).order_by(AuditEvent.id.desc()).limit(1)) or 0
        )
        db.session.rollback()
    response = app.test_client().post(
        "/oauth/token",
        data=urlencode(form),
        headers=headers,
    )
    text = response.get_data(as_text=True)
    body = json.loads(text)
    if "access_token" in body:
        token = body["access_token"]
        header_segment, payload_segment, signature = token.split(".")
        jose_header, claims = _segments(token)
        jti = claims["jti"]
        assert len(jti) == 24 and len(signature) == 86
        # The exact bytes of the payload, the jti aside (JSON member order and spacing).
        payload = base64.urlsafe_b64decode(payload_segment + "=" * (-len(payload_segment) % 4))
        text = text.replace(token, "TOKEN")
        body = {**body, "access_token": (header_segment, payload.replace(jti.encode(), b"JTI"))}
    else:
        jti = None
    with app.app_context():
        rows = [
            {c: v for c, v in row.items() if c not in ("jti", "token_hash")}
            for row in db.session.execute(
                select(AccessToken.__table__).where(AccessToken.jti.not_in(tokens_before))
            ).mappings()
        ]
        events = [
            {
                **{c: v for c, v in row.items() if c != "id"},
                "detail": row["detail"].replace(jti, "JTI") if jti else row["detail"],
            }
            for row in db.session.execute(
                select(AuditEvent.__table__).where(AuditEvent.id > audit_before)
            ).mappings()
        ]
        db.session.rollback()
    return response.status_code, sorted(response.headers.items()), text, body, rows, events


def _issued_count(app) -> float:
    metric = app.extensions["tessera"].metrics.tokens_issued.labels("client_credentials")
    return metric._value.get()


@pytest.mark.parametrize("shape", SHAPES, ids=[s[0] for s in SHAPES])
def test_every_request_shape_gets_the_answer_authlib_gave(app, shape):
    _name, form, headers = shape
    counted = _issued_count(app)
    lean = _answer(app, True, form, headers)
    counted_lean = _issued_count(app) - counted
    authlib = _answer(app, False, form, headers)
    counted_authlib = _issued_count(app) - counted - counted_lean
    assert lean == authlib
    assert counted_lean == counted_authlib
    # The shapes cover both outcomes; a success stores one token and one event.
    status, _headers, _text, _body, rows, events = lean
    if status == 200:
        assert len(rows) == 1 and [e["event"] for e in events] == ["token_issued"]
    else:
        assert rows == [] and events == []


@pytest.mark.parametrize("nonces", [False, True])
def test_dpop_bound_tokens_and_nonces_are_the_same(make_database_url, nonces):
    settings = auth_settings(
        make_database_url("auth"),
        ISSUER,
        dpop_nonce_required=nonces,
        client_credentials_tokens="stored",
    )
    application = create_app(settings, create_tables=True, clock=FakeClock())
    seed(application)
    key = DPoPKey()
    nonce = None
    if nonces:
        first = _answer(application, True, CC, _basic(*SERVICE_APP), dpop=key)
        assert first[0] == 400 and "use_dpop_nonce" in first[2]
        assert first == _answer(application, False, CC, _basic(*SERVICE_APP), dpop=key)
        nonce = dict(first[1])["DPoP-Nonce"]

    class Proofs(DPoPKey):
        def proof(self, method, url, **kwargs):
            return super().proof(method, url, nonce=nonce, **kwargs)

    proofs = Proofs()
    for form, headers in (
        (CC, _basic(*SERVICE_APP)),
        ([*CC, ("scope", "notes:read")], _basic(*SERVICE_APP)),
        (CC, _basic(SERVICE_APP[0], "wrong")),
        ([*CC, ("scope", "profile")], _basic(*SERVICE_APP)),
    ):
        lean = _answer(application, True, form, headers, dpop=proofs)
        assert lean == _answer(application, False, form, headers, dpop=proofs)
        if lean[0] == 200:
            assert lean[3]["token_type"] == "DPoP"
            assert proofs.jkt.encode() in lean[3]["access_token"][1]
        if nonces:
            assert dict(lean[1])["DPoP-Nonce"] == nonce


def test_an_issuance_overtaken_by_a_revocation_is_refused_the_same(make_database_url):
    """A registration cached from before the client's epoch moved: the guard refuses the
    issuance, audits the refusal and forgets the registration, on either path."""
    settings = auth_settings(
        make_database_url("auth"),
        ISSUER,
        client_cache_seconds=60,
        client_credentials_tokens="stored",
    )
    application = create_app(settings, create_tables=True, clock=FakeClock())
    seed(application)
    answers = []
    for lean in (True, False):
        primed = _answer(application, lean, CC, _basic(*SERVICE_APP))
        assert primed[0] == 200
        with application.app_context():
            db.session.execute(
                update(Client)
                .where(Client.client_id == SERVICE_APP[0])
                .values(token_epoch=Client.token_epoch + 1)
            )
            db.session.commit()
        answers.append(_answer(application, lean, CC, _basic(*SERVICE_APP)))
        # forgotten: the next request reads the new epoch and is served
        assert _answer(application, lean, CC, _basic(*SERVICE_APP))[0] == 200
    lean, authlib = answers
    assert lean == authlib
    assert lean[0] == 401
    assert [e["event"] for e in lean[5]] == ["issuance_refused_revoked"]
    assert json.loads(lean[5][0]["detail"]) == {
        "grant_type": "client_credentials",
        "reason": "client_revoked",
    }
