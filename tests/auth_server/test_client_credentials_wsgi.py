"""The client_credentials token request answered below Flask
(auth_server/client_credentials_wsgi.py) gets the answer Flask gives, byte for byte (the random
jti and signature of a token named rather than given), with the same rows, audit events, log
lines and metrics; everything it does not answer reaches Flask unchanged. On SQLite and
PostgreSQL."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
from urllib.parse import quote

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.exc import OperationalError
from werkzeug.test import EnvironBuilder, run_wsgi_app

from auth_server import create_app
from auth_server.client_credentials_wsgi import FAST_PATH, MAX_BODY, ClientCredentialsFastPath
from auth_server.clients import register_client
from auth_server.db import db
from auth_server.models import AccessToken, AuditEvent, Client
from shared.protocol.basic_auth import basic_credentials_header
from shared.service.logging import JsonFormatter
from tests.dpop_support import DPoPKey
from tests.fast_path_support import Paths
from tests.support import (
    DEMO_APP,
    NOTES,
    NOTES_API,
    OTHER_APP,
    REPORTS,
    SERVICE_APP,
    SPA_APP,
    SPA_REDIRECT,
    FakeClock,
    auth_settings,
    seed,
)

ISSUER = "http://127.0.0.1:9"
TOKEN_URL = f"{ISSUER}/oauth/token"
FORM = "application/x-www-form-urlencoded"
WIDE_APP = ("wide-app", "wide-app-secret")
OFF_APP = ("off-app", "off-app-secret")
CC = "grant_type=client_credentials"
SPA_ORIGIN = "https://spa.example.com"
assert SPA_REDIRECT.startswith(SPA_ORIGIN + "/")


def basic(client=SERVICE_APP) -> dict[str, str]:
    return {"Authorization": basic_credentials_header(*client)}


def post(client=SERVICE_APP) -> str:
    return f"client_id={quote(client[0])}&client_secret={quote(client[1])}"


def paths_of(app) -> Paths:
    return Paths(app, FAST_PATH, ClientCredentialsFastPath)


class LogLines:
    """The JSON lines the app's `tessera` loggers write at INFO, kept in memory."""

    def __init__(self):
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(JsonFormatter())
        self.logger = logging.getLogger("tessera")

    def __enter__(self):
        self.level = self.logger.level
        self.logger.setLevel(logging.INFO)
        self.logger.addHandler(self.handler)
        return self

    def __exit__(self, *exc_info):
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.level)

    def taken(self) -> list[dict]:
        lines = [json.loads(line) for line in self.stream.getvalue().splitlines()]
        self.stream.seek(0)
        self.stream.truncate()
        for line in lines:
            del line["ts"]
            line.pop("exc", None)  # a traceback: its line numbers differ by path
        return lines


def make_app(database_url: str, **overrides):
    settings = auth_settings(database_url, ISSUER, trusted_proxies=1, **overrides)
    application = create_app(settings, create_tables=True, clock=FakeClock())
    seed(application)
    with application.app_context():
        for client_id, secret, audiences in ((*WIDE_APP, [NOTES, REPORTS]), (*OFF_APP, [NOTES])):
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
        application.extensions["tessera"].keyring.signing_key()
    return application


@pytest.fixture(params=["self-contained", "stored"])
def app(make_database_url, request):
    return make_app(make_database_url("auth"), client_credentials_tokens=request.param)


@pytest.fixture
def logs():
    with LogLines() as lines:
        yield lines


def environ_of(
    body: str | bytes = "",
    *,
    headers: dict[str, str] | None = None,
    content_type: str | None = FORM,
    method: str = "POST",
    path: str = "/oauth/token",
    chunked: bool = False,
    content_length: str | None = None,
) -> dict:
    data = body.encode() if isinstance(body, str) else body
    environ = EnvironBuilder(
        path=path,
        method=method,
        data=data,
        content_type=content_type,
        headers={"X-Request-ID": "rid-1", **(headers or {})},
    ).get_environ()
    if chunked:
        # What gunicorn hands on for a chunked body: no length, the body ends the stream.
        del environ["CONTENT_LENGTH"]
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
        environ["wsgi.input_terminated"] = True
        environ["wsgi.input"] = io.BytesIO(data)
    if content_length is not None:
        environ["CONTENT_LENGTH"] = content_length
    return environ


def _counters(app) -> dict[tuple, float]:
    """Every counter of the app (and each histogram's count), by name and labels."""
    registry = app.extensions["tessera"].metrics.registry
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name.endswith(("_total", "_count"))
    }


def _decoded(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def observe(app, wsgi, paths: Paths, logs: LogLines, request: dict) -> dict:
    """Everything a request changes that anyone can see: the answer (a token's jti and
    signature named, its JOSE header and claims kept byte for byte), the rows it stored, the
    counters it moved, the log lines it wrote, and whether it reached Flask."""
    with app.app_context():
        tokens_before = set(db.session.scalars(select(AccessToken.jti)))
        audit_before = db.session.scalar(select(AuditEvent.id).order_by(AuditEvent.id.desc()))
        db.session.rollback()
    counters_before = _counters(app)
    logs.taken()
    reached_flask = paths.flask.calls

    iterable, status, headers = run_wsgi_app(wsgi, environ_of(**request))
    body = b"".join(iterable).decode()
    issuance = app.extensions["tessera"].self_contained_issuance
    if issuance is not None:
        # A self-contained token's audit row is written after the answer: write it now.
        issuance.audit_rows.flush()

    reached_flask = paths.flask.calls > reached_flask
    jti = token = None
    if '"access_token"' in body:
        issued = json.loads(body)["access_token"]
        header, claims, signature = issued.split(".")
        jti = json.loads(_decoded(claims))["jti"]
        # A stored token's jti is random; a self-contained one's carries its client's epoch.
        assert re.fullmatch(r"[\w-]{24}(\.\d+)?", jti) and len(signature) == 86
        body = body.replace(issued, "TOKEN")
        # The JOSE header as encoded, the claims as serialized (member order, spacing).
        token = (header, _decoded(claims).decode().replace(jti, "JTI"))

    def named(text):
        return text.replace(jti, "JTI") if jti else text

    with app.app_context():
        rows = [
            {c: v for c, v in row.items() if c not in ("jti", "token_hash")}
            for row in db.session.execute(
                select(AccessToken.__table__).where(AccessToken.jti.not_in(tokens_before))
            ).mappings()
        ]
        events = [
            {**{c: v for c, v in row.items() if c != "id"}, "detail": named(row["detail"])}
            for row in db.session.execute(
                select(AuditEvent.__table__).where(AuditEvent.id > (audit_before or 0))
            ).mappings()
        ]
        db.session.rollback()
    counters = _counters(app)
    moved = {
        key: value - counters_before.get(key, 0)
        for key, value in counters.items()
        if value != counters_before.get(key, 0)
    }
    lines = [json.loads(named(json.dumps(line))) for line in logs.taken()]
    return {
        "status": status,
        "headers": list(headers.items()),
        "body": body,
        "token": token,
        "rows": rows,
        "events": events,
        "counters": moved,
        "logs": lines,
        "reached_flask": reached_flask,
    }


def both_paths(app, paths, logs, request: dict) -> tuple[dict, dict]:
    """What the request gets through the app with its fast path, then through Flask alone
    (a DPoP proof is made afresh for each: a proof is good for one request)."""
    answers = []
    for wsgi in (paths.with_fast_path, paths.flask_alone):
        made = dict(request)
        if callable(made.get("headers")):
            made["headers"] = made["headers"]()
        answers.append(observe(app, wsgi, paths, logs, made))
    return answers[0], answers[1]


DPOP_KEY = DPoPKey()


def _dpop_proof() -> dict[str, str]:
    """A fresh proof by the same key: a proof is good for one request, the key binds the token."""
    return {**basic(), "DPoP": DPOP_KEY.proof("POST", TOKEN_URL)}


# name -> the request; answered below Flask when the name is in COMMON.
SHAPES: dict[str, dict] = {
    "basic": dict(body=CC, headers=basic()),
    "post": dict(body=f"{CC}&{post()}"),
    "post, credentials first": dict(body=f"{post()}&{CC}"),
    "basic, client_id in the form too": dict(
        body=f"{CC}&client_id={SERVICE_APP[0]}", headers=basic()
    ),
    "scope": dict(body=f"{CC}&scope=notes:read", headers=basic()),
    "scope percent-encoded": dict(body=f"{CC}&scope=notes%3Aread", headers=basic()),
    "two scopes, plus for the space": dict(
        body=f"{CC}&scope=notes:read+notes:write", headers=basic()
    ),
    "scopes reordered and repeated": dict(
        body=f"{CC}&scope=notes%3Awrite%20notes%3Aread%20notes%3Awrite", headers=basic()
    ),
    "resource": dict(body=f"{CC}&resource={quote(NOTES)}", headers=basic()),
    "scope and resource, post": dict(
        body=f"scope=notes:write&{CC}&resource={NOTES}&{post()}",
    ),
    "two resources": dict(
        body=f"{CC}&resource={NOTES}&resource={REPORTS}", headers=basic(WIDE_APP)
    ),
    "a resource repeated": dict(
        body=f"{CC}&resource={REPORTS}&resource={NOTES}&resource={REPORTS}",
        headers=basic(WIDE_APP),
    ),
    "wide client, every audience": dict(body=CC, headers=basic(WIDE_APP)),
    "demo app": dict(body=CC, headers=basic(DEMO_APP)),
    "behind the trusted proxy": dict(
        body=CC, headers={**basic(), "X-Forwarded-For": "203.0.113.9"}
    ),
    "a cookie": dict(body=CC, headers={**basic(), "Cookie": "tessera_login=x"}),
    "content type in capitals": dict(
        body=CC, headers=basic(), content_type="Application/X-WWW-Form-Urlencoded"
    ),
    # Flask's: every refusal, and every other shape.
    "basic, wrong secret": dict(body=CC, headers=basic((SERVICE_APP[0], "wrong"))),
    "post, wrong secret": dict(body=f"{CC}&{post((SERVICE_APP[0], 'wrong'))}"),
    "unknown client": dict(body=CC, headers=basic(("nobody", "secret"))),
    "no credentials": dict(body=CC),
    "post, no secret": dict(body=f"{CC}&client_id={SERVICE_APP[0]}"),
    "disabled client": dict(body=CC, headers=basic(OFF_APP)),
    "client without the grant": dict(body=CC, headers=basic(OTHER_APP)),
    "resource server's client": dict(body=CC, headers=basic(NOTES_API)),
    "public client": dict(body=f"{CC}&client_id={SPA_APP}"),
    "basic and post": dict(body=f"{CC}&{post()}", headers=basic()),
    "Bearer authorization, post": dict(
        body=f"{CC}&{post()}", headers={"Authorization": "Bearer abc"}
    ),
    "basic, not base64": dict(body=CC, headers={"Authorization": "Basic ***"}),
    "scope too wide": dict(body=f"{CC}&scope=profile", headers=basic()),
    "scope malformed": dict(body=f"{CC}&scope=notes:read++notes:write", headers=basic()),
    "resource not allowed": dict(body=f"{CC}&resource={REPORTS}", headers=basic()),
    "resource relative": dict(body=f"{CC}&resource=notes", headers=basic()),
    "resource with a fragment": dict(body=f"{CC}&resource={NOTES}%23x", headers=basic()),
    "DPoP proof": dict(body=CC, headers=_dpop_proof),
    "empty DPoP header": dict(body=CC, headers={**basic(), "DPoP": ""}),
    "Origin of a browser app": dict(body=CC, headers={**basic(), "Origin": SPA_ORIGIN}),
    "Origin of another site": dict(body=CC, headers={**basic(), "Origin": "https://evil.example"}),
    "grant_type twice": dict(body=f"{CC}&{CC}", headers=basic()),
    "scope twice": dict(body=f"{CC}&scope=notes:read&scope=notes:read", headers=basic()),
    "client_secret twice": dict(
        body=f"{CC}&{post()}&client_secret={SERVICE_APP[1]}",
    ),
    "empty scope": dict(body=f"{CC}&scope=", headers=basic()),
    "empty grant_type": dict(body="grant_type=", headers=basic()),
    "no grant_type": dict(body="scope=notes:read", headers=basic()),
    "another grant type": dict(body="grant_type=authorization_code", headers=basic()),
    "unknown parameter": dict(body=f"{CC}&state=s", headers=basic()),
    "parameter without a value": dict(body=f"{CC}&scope", headers=basic()),
    "empty pair": dict(body=f"{CC}&&scope=notes:read", headers=basic()),
    "percent-encoded name": dict(body="grant%5Ftype=client_credentials", headers=basic()),
    "JSON body": dict(
        body='{"grant_type": "client_credentials"}',
        content_type="application/json",
        headers=basic(),
    ),
    "charset parameter": dict(body=CC, content_type=FORM + "; charset=utf-8", headers=basic()),
    "no content type": dict(body=CC, content_type=None, headers=basic()),
    "query string": dict(body=CC, path="/oauth/token?scope=notes:read", headers=basic()),
    "chunked body": dict(body=CC, chunked=True, headers=basic()),
    "Content-Length with a sign": dict(body=CC, content_length=f"+{len(CC)}", headers=basic()),
    "Content-Length with an underscore": dict(
        body=CC, content_length=f"{len(CC) // 10}_{len(CC) % 10}", headers=basic()
    ),
    "oversized body": dict(body=f"{CC}&resource={'a' * 5000}", headers=basic()),
    "not ASCII": dict(body=f"{CC}&scope=".encode() + b"\xc3\xa9", headers=basic()),
    "percent-escape not UTF-8": dict(body=f"{CC}&scope=%ff", headers=basic()),
    "garbage": dict(body=b"\x00\x01garbage==&=\xff", headers=basic()),
    "no body": dict(body="", headers=basic()),
    "GET": dict(method="GET", headers=basic()),
    "another path": dict(body=CC, path="/oauth/token/", headers=basic()),
}

COMMON = {
    "basic",
    "post",
    "post, credentials first",
    "basic, client_id in the form too",
    "scope",
    "scope percent-encoded",
    "two scopes, plus for the space",
    "scopes reordered and repeated",
    "resource",
    "scope and resource, post",
    "two resources",
    "a resource repeated",
    "wide client, every audience",
    "demo app",
    "behind the trusted proxy",
    "a cookie",
    "content type in capitals",
}


def test_every_shape_gets_the_answer_flask_gives(app, logs):
    paths = paths_of(app)
    for name, request in SHAPES.items():
        fast, flask = both_paths(app, paths, logs, request)
        assert fast["reached_flask"] == (name not in COMMON), name
        assert flask["reached_flask"], name
        fast.pop("reached_flask"), flask.pop("reached_flask")
        assert fast == flask, name
        assert ("X-Request-ID", "rid-1") in fast["headers"], name
        issued = fast["status"] == "200 OK" and '"access_token"' in fast["body"]
        stored = app.extensions["tessera"].self_contained_issuance is None
        assert len(fast["rows"]) == (issued and stored), name
        assert [e["event"] for e in fast["events"]] == (["token_issued"] if issued else []), name


def test_the_fast_answer_is_the_token_and_everything_around_it(app, logs):
    """The common answer, spelled out: a token, its row and event, the client's address as
    the trusted proxy gives it, the request counted under /oauth/token, the audit line
    carrying the request id (a self-contained token: no row, the same event)."""
    paths = paths_of(app)
    request = dict(body=CC, headers={**basic(), "X-Forwarded-For": "203.0.113.9"})
    answer = observe(app, paths.with_fast_path, paths, logs, request)

    assert not answer["reached_flask"]
    assert answer["status"] == "200 OK"
    assert [name for name, _ in answer["headers"]] == [
        "Content-Type",
        "Cache-Control",
        "Pragma",
        "Content-Length",
        "Vary",
        "X-Request-ID",
    ]
    assert json.loads(answer["body"])["token_type"] == "Bearer"
    assert json.loads(answer["token"][1])["client_id"] == SERVICE_APP[0]
    assert json.loads(answer["token"][1])["scope"] == "notes:read notes:write"
    if app.extensions["tessera"].self_contained_issuance is None:
        assert [row["scope"] for row in answer["rows"]] == ["notes:read notes:write"]
    else:
        assert answer["rows"] == []
    assert [(e["event"], e["ip"]) for e in answer["events"]] == [("token_issued", "203.0.113.9")]
    counters = answer["counters"]
    requests = (
        "tessera_http_requests_total",
        (("endpoint", "/oauth/token"), ("method", "POST"), ("status", "200")),
    )
    assert counters[requests] == 1
    assert counters[("tessera_tokens_issued_total", (("grant_type", "client_credentials"),))] == 1
    audit_lines = [line for line in answer["logs"] if line["logger"] == "tessera.audit"]
    assert [(line["msg"], line["request_id"]) for line in audit_lines] == [
        ("token_issued", "rid-1")
    ]


@pytest.mark.parametrize("nonces", [False, True], ids=["no nonces", "nonces"])
def test_the_dpop_nonce_header_is_the_views(make_database_url, logs, nonces):
    """With DPoP nonces on, every token response carries DPoP-Nonce (RFC 9449 §8.2), the fast
    path's too; a request with a proof is Flask's."""
    application = make_app(make_database_url("auth"), dpop_nonce_required=nonces)
    paths = paths_of(application)
    for request, answered_fast in (
        (dict(body=CC, headers=basic()), True),
        (dict(body=CC, headers=_dpop_proof), False),
    ):
        fast, flask = both_paths(application, paths, logs, request)
        assert fast.pop("reached_flask") != answered_fast
        flask.pop("reached_flask")
        assert fast == flask
        assert any(name == "DPoP-Nonce" for name, _ in fast["headers"]) == nonces


def test_an_issuance_overtaken_by_a_revocation_is_refused_below_flask_as_flask_refuses_it(
    make_database_url, logs
):
    """A registration cached from before the client's epoch moved: the issuance is refused,
    the refusal audited and the registration forgotten. Flask would read the client again and
    issue, so the fast path answers the refusal itself, as the view does. (Stored tokens: the
    epoch is moved behind the server's back here, which only the stored path's guard sees;
    tests/auth_server/test_self_contained_tokens.py has the self-contained case.)"""
    application = make_app(
        make_database_url("auth"), client_cache_seconds=60, client_credentials_tokens="stored"
    )
    paths = paths_of(application)
    refusals = []
    for wsgi in (paths.with_fast_path, paths.flask_alone):
        primed = observe(application, wsgi, paths, logs, dict(body=CC, headers=basic()))
        assert primed["status"] == "200 OK"
        with application.app_context():
            db.session.execute(
                update(Client)
                .where(Client.client_id == SERVICE_APP[0])
                .values(token_epoch=Client.token_epoch + 1)
            )
            db.session.commit()
        refusals.append(observe(application, wsgi, paths, logs, dict(body=CC, headers=basic())))
        # forgotten: the next request reads the new epoch and is served
        again = observe(application, wsgi, paths, logs, dict(body=CC, headers=basic()))
        assert again["status"] == "200 OK"
    fast, flask = refusals
    assert not fast.pop("reached_flask")
    assert flask.pop("reached_flask")
    assert fast == flask
    assert fast["status"] == "401 UNAUTHORIZED"
    assert [e["event"] for e in fast["events"]] == ["issuance_refused_revoked"]


def test_a_write_the_database_fails_is_answered_below_flask_as_flask_answers_it(
    make_database_url, logs
):
    """The database fails the token's write: 503 temporarily_unavailable, logged, nothing
    stored; the fast path does not hand it to Flask, which would write a second time. (Stored
    tokens: a self-contained token writes nothing before its answer.)"""
    application = make_app(make_database_url("auth"), client_credentials_tokens="stored")
    paths = paths_of(application)
    with application.app_context():
        engine = db.engine
    attempts = []

    def fail_the_write(_connection, _cursor, statement, *_args):
        if "INSERT INTO access_tokens" in statement:
            attempts.append(statement)
            raise OperationalError(statement, None, ConnectionError("simulated: database lost"))

    event.listen(engine, "before_cursor_execute", fail_the_write)
    try:
        fast, flask = both_paths(application, paths, logs, dict(body=CC, headers=basic()))
    finally:
        event.remove(engine, "before_cursor_execute", fail_the_write)
    assert len(attempts) == 2  # one per path: the fast path did not try twice
    assert not fast.pop("reached_flask")
    assert flask.pop("reached_flask")
    assert fast == flask
    assert fast["status"] == "503 SERVICE UNAVAILABLE"
    assert fast["rows"] == [] and fast["events"] == []
    assert [(line["msg"], line["request_id"]) for line in fast["logs"]] == [
        ("database unavailable: OperationalError", "rid-1")
    ]


def test_a_body_over_max_request_bytes_gets_flasks_413(make_database_url, logs):
    """MAX_REQUEST_BYTES may be set below the fast path's own limit: a common form longer
    than it is Flask's to refuse."""
    application = make_app(make_database_url("auth"), max_request_bytes=1024)
    paths = paths_of(application)
    scope = "+".join(["notes:read"] * 100)
    request = dict(body=f"{CC}&scope={scope}", headers=basic())
    assert 1024 < len(request["body"]) <= MAX_BODY
    fast, flask = both_paths(application, paths, logs, request)
    assert fast.pop("reached_flask") and flask.pop("reached_flask")
    assert fast == flask
    assert fast["status"] == "413 REQUEST ENTITY TOO LARGE"


def test_with_the_lean_grant_off_flask_answers(app, logs):
    """`lean_client_credentials = False` sends the grant through Authlib: the fast path, built
    on the lean grant's functions, stands aside."""
    app.extensions["tessera"].lean_client_credentials = False
    paths = paths_of(app)
    answer = observe(app, paths.with_fast_path, paths, logs, dict(body=CC, headers=basic()))
    assert answer["reached_flask"]
    assert answer["status"] == "200 OK"
