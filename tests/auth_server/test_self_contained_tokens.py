"""Self-contained client_credentials tokens (auth_server/self_contained.py, the default
CLIENT_CREDENTIALS_TOKENS): not stored, active the moment they are answered, and ended early
exactly as stored tokens are: revoked by their client (RFC 7009), by disabling the client or
narrowing it, with the revocation final however it races the issuance. Anything not signed by a
published key of this server, or not shaped as this server shapes them, is inactive. On SQLite
and PostgreSQL, through real HTTP."""

from __future__ import annotations

import base64
import json
import threading

import pytest
from joserfc import jws
from joserfc.jwk import ECKey
from sqlalchemy import func, select

from auth_server import create_app
from auth_server.clients import register_client
from auth_server.db import db
from auth_server.maintenance import purge_expired
from auth_server.models import AccessToken, AuditEvent, Client, RevokedAccessToken
from auth_server.self_contained import TokenSignatures
from auth_server.tokens import sign_jwt
from tests.support import (
    DEMO_APP,
    NOTES,
    SERVICE_APP,
    AuthServer,
    FakeClock,
    start_auth_server,
)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def auth(serve, make_database_url, clock):
    return start_auth_server(serve, make_database_url("auth"), clock=clock)


def _cli(auth, *args):
    with auth.app.app_context():
        result = auth.app.test_cli_runner().invoke(args=list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _segments(token: str) -> tuple[dict, dict]:
    header, claims, _ = token.split(".")
    decode = lambda s: json.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))  # noqa: E731
    return decode(header), decode(claims)


def _token(auth, client=SERVICE_APP, **form) -> str:
    response = auth.token(client, grant_type="client_credentials", **form)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def _flush_audit(auth) -> None:
    auth.app.extensions["tessera"].self_contained_issuance.audit_rows.flush()


def _events(auth, event: str) -> list[dict]:
    _flush_audit(auth)
    with auth.app.app_context():
        rows = db.session.scalars(select(AuditEvent).where(AuditEvent.event == event)).all()
        events = [{**json.loads(r.detail), "client_id": r.client_id, "ip": r.ip} for r in rows]
        db.session.rollback()
    return events


def _count(auth, model) -> int:
    with auth.app.app_context():
        count = db.session.scalar(select(func.count()).select_from(model))
        db.session.rollback()
    return count


def test_a_token_is_not_stored_and_introspection_knows_it_at_once(auth):
    token = _token(auth, scope="notes:read")
    header, claims = _segments(token)
    assert header["typ"] == "at+jwt"
    assert _count(auth, AccessToken) == 0
    body = auth.introspect(token).json()
    assert body == {
        "active": True,
        "scope": "notes:read",
        "client_id": SERVICE_APP[0],
        "sub": SERVICE_APP[0],
        "aud": NOTES,
        "iss": auth.url,
        "exp": claims["exp"],
        "iat": claims["iat"],
        "token_use": "access_token",
        "jti": claims["jti"],
        "token_type": "Bearer",
    }
    # Its audit row follows the answer (the buffer), with the same detail a stored token has.
    (issued,) = _events(auth, "token_issued")
    assert issued["jti"] == claims["jti"] and issued["grant_type"] == "client_credentials"
    assert issued["client_id"] == SERVICE_APP[0]


def test_its_client_revokes_it_once_and_it_is_inactive_at_once(auth):
    token = _token(auth)
    assert auth.is_active(token)  # remembered by the introspection memory
    for _ in range(2):
        assert auth.revoke(token, client=SERVICE_APP).status_code == 200
    assert auth.introspect(token).json() == {"active": False}
    assert _count(auth, RevokedAccessToken) == 1
    (revoked,) = _events(auth, "token_revoked")
    assert revoked["jti"] == _segments(token)[1]["jti"]
    # Another token of the same client is untouched.
    assert auth.is_active(_token(auth))


def test_another_client_cannot_revoke_it(auth):
    token = _token(auth)
    assert auth.revoke(token, client=DEMO_APP).status_code == 200  # RFC 7009 §2.2: no tell
    assert auth.is_active(token)
    assert _count(auth, RevokedAccessToken) == 0


def test_disabling_or_narrowing_the_client_ends_its_tokens_and_enabling_does_not_revive_them(
    auth,
):
    wide = _token(auth, scope="notes:read notes:write")
    _cli(auth, "clients", "update", SERVICE_APP[0], "--scopes", "notes:read")
    assert not auth.is_active(wide)
    narrow = _token(auth)
    assert auth.is_active(narrow)
    _cli(auth, "clients", "disable", SERVICE_APP[0])
    assert not auth.is_active(narrow)
    refused = auth.token(SERVICE_APP, grant_type="client_credentials")
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    _cli(auth, "clients", "enable", SERVICE_APP[0])
    assert not auth.is_active(narrow) and not auth.is_active(wide)
    assert auth.is_active(_token(auth))


def test_a_client_registered_again_under_a_deleted_ones_id_gets_none_of_its_tokens(auth):
    old = _token(auth)
    _cli(auth, "clients", "disable", SERVICE_APP[0])
    _cli(auth, "clients", "delete", SERVICE_APP[0])
    with auth.app.app_context():
        # The worst case: the new registration gets the very epoch the old token carries.
        epoch = int(_segments(old)[1]["jti"].rpartition(".")[2])
        register_client(
            db.session,
            SERVICE_APP[0],
            secret=SERVICE_APP[1],
            grant_types=["client_credentials"],
            scopes=["notes:read"],
            audiences=[NOTES],
        )
        db.session.commit()
        new_epoch = db.session.scalar(
            select(Client.token_epoch).where(Client.client_id == SERVICE_APP[0])
        )
    assert new_epoch != epoch  # a random first epoch (2**-30 to collide)
    assert not auth.is_active(old)
    assert auth.is_active(_token(auth))


def test_an_issuance_raced_by_disable_is_refused_or_its_token_is_dead(auth):
    """The epoch is checked, then the token signed with it: a disable that commits between the
    two leaves a token whose epoch is gone. Paused exactly there."""
    components = auth.app.extensions["tessera"]
    reached, release = threading.Event(), threading.Event()

    def pause_once(step: str) -> None:
        if step == "guarded" and not reached.is_set():
            reached.set()
            assert release.wait(10)

    components.steps = pause_once
    result: dict = {}
    issuer = threading.Thread(
        target=lambda: result.update(r=auth.token(SERVICE_APP, grant_type="client_credentials"))
    )
    issuer.start()
    assert reached.wait(10)
    _cli(auth, "clients", "disable", SERVICE_APP[0])
    release.set()
    issuer.join(10)
    response = result["r"]
    assert response.status_code == 200  # it had passed the check
    assert not auth.is_active(response.json()["access_token"])


def test_a_cached_registration_from_before_a_revocation_is_refused_then_forgotten(
    serve, make_database_url
):
    """A worker whose registration of the client predates a revocation made elsewhere (another
    worker, the CLI): the issuance is refused (the epoch moved), audited, and the registration
    forgotten, as the stored path's guard does."""
    auth = start_auth_server(serve, make_database_url("auth"), client_cache_seconds=60)
    assert auth.is_active(_token(auth))  # the registration is cached now, for a minute
    elsewhere = _another_worker(serve, auth)
    _cli(elsewhere, "clients", "disable", SERVICE_APP[0])
    _cli(elsewhere, "clients", "enable", SERVICE_APP[0])
    refused = auth.token(SERVICE_APP, grant_type="client_credentials")
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    assert [e["reason"] for e in _events(auth, "issuance_refused_revoked")] == ["client_revoked"]
    assert auth.is_active(_token(auth))  # forgotten: read again, served


def _forged(token: str, *, header: dict | None = None, claims: dict | None = None) -> str:
    real_header, real_claims = _segments(token)
    key = ECKey.generate_key("P-256")
    return jws.serialize_compact(
        {**real_header, **(header or {})},
        json.dumps({**real_claims, **(claims or {})}).encode(),
        key,
        algorithms=["ES256"],
    )


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_anything_this_server_did_not_sign_as_it_signs_is_inactive(auth):
    token = _token(auth)
    header, claims = _segments(token)
    signing_input, _, signature = token.rpartition(".")
    tampered_claims = ".".join([token.split(".")[0], _b64({**claims, "scope": "admin"}), signature])
    unsigned = ".".join([_b64({**header, "alg": "none"}), token.split(".")[1], ""])
    cases = {
        "another key, same kid": _forged(token),
        "claims changed": tampered_claims,
        "alg none": unsigned,
        "signature cut": signing_input + ".",
        "unknown kid": _forged(token, header={"kid": "nobody"}),
        "another client's epoch": _forged(token, claims={"jti": "x.1"}),
        "garbage in the jti": ".".join(
            [token.split(".")[0], _b64({**claims, "jti": "a.b.c"}), signature]
        ),
        "not a jwt": "a.b.c",
        "payload not json": f"{token.split('.')[0]}.bm90IGpzb24.{signature}",
    }
    for name, forged in cases.items():
        response = auth.introspect(forged)
        assert response.status_code == 200, name
        assert response.json() == {"active": False}, name
        assert auth.revoke(forged, client=SERVICE_APP).status_code == 200, name
    assert _count(auth, RevokedAccessToken) == 0
    assert auth.is_active(token)


def test_a_token_of_another_issuer_or_shape_is_inactive_even_if_signed_by_our_key(auth):
    """Signed with the server's own key but not as it issues them: never active."""
    components = auth.app.extensions["tessera"]
    token = _token(auth)
    header, claims = _segments(token)
    signer = components.keyring.signing_key()
    for name, changed in {
        "another issuer": {"iss": "https://elsewhere.example"},
        "iat as text": {"iat": str(claims["iat"])},
        "no scope": {"scope": None},
        "aud empty": {"aud": []},
        "epoch not a number": {"jti": "abc.x"},
    }.items():
        forged = sign_jwt(signer, {k: v for k, v in {**claims, **changed}.items() if v is not None})
        assert auth.introspect(forged).json() == {"active": False}, name
    id_token_like = sign_jwt(signer, claims).replace(
        token.split(".")[0], _b64({**header, "typ": "JWT"}), 1
    )
    assert auth.introspect(id_token_like).json() == {"active": False}


def _another_worker(serve, auth, **changes):
    """Another process of the same server (same issuer and database), its own key ring."""
    app = create_app(auth.settings.model_copy(update=changes), create_tables=False)
    server = serve(app)
    return AuthServer(url=server.url, app=app, settings=auth.settings)


def test_a_token_stays_active_through_a_key_rotation_and_a_worker_learns_a_new_key(
    serve, make_database_url
):
    auth = start_auth_server(serve, make_database_url("auth"), key_cache_seconds=3600)
    before = _token(auth)
    other = _another_worker(serve, auth)  # its keys read once and cached for an hour
    assert other.is_active(before)
    _cli(auth, "keys", "rotate")
    auth.app.extensions["tessera"].keyring.invalidate()
    after = _token(auth)
    assert _segments(after)[0]["kid"] != _segments(before)[0]["kid"]
    # `other` has not read the keys since: an unknown kid makes it read them once.
    assert other.is_active(after)
    assert other.is_active(before) and auth.is_active(before)


def test_unknown_kids_make_a_worker_read_the_keys_at_most_once_a_second():
    reads = []
    jwks = {"keys": []}
    now = [0.0]
    signatures = TokenSignatures(lambda: jwks, lambda: reads.append(now[0]), clock=lambda: now[0])
    header = _b64({"typ": "at+jwt", "alg": "ES256", "kid": "nobody"})
    for step in range(30):
        now[0] = step * 0.1
        assert signatures.verified_claims(f"{header}.{_b64({'jti': 'a.1'})}.c2ln") is None
    assert reads == [0.0, 1.0, 2.0]


def test_revoked_rows_are_purged_once_their_token_has_expired(auth, clock):
    token = _token(auth)
    assert auth.revoke(token, client=SERVICE_APP).status_code == 200
    with auth.app.app_context():
        assert purge_expired(db.session, int(clock()), 86400)["revoked_access_tokens"] == 0
        clock.advance(auth.settings.access_token_ttl + 1)
        assert purge_expired(db.session, int(clock()), 86400)["revoked_access_tokens"] == 1
    assert auth.introspect(token).json() == {"active": False}  # expired


def test_stored_tokens_remain_a_setting_and_both_kinds_are_introspected(serve, make_database_url):
    current = start_auth_server(serve, make_database_url("auth"))
    stored = _another_worker(serve, current, client_credentials_tokens="stored")
    stored_token = _token(stored)
    assert "." not in _segments(stored_token)[1]["jti"]
    assert _count(stored, AccessToken) == 1
    contained = _token(current)
    # Either server knows and revokes both kinds (a server switched over knows its old tokens).
    for server in (stored, current):
        assert server.is_active(stored_token) and server.is_active(contained)
    assert current.revoke(stored_token, client=SERVICE_APP).status_code == 200
    assert stored.revoke(contained, client=SERVICE_APP).status_code == 200
    for server in (stored, current):
        assert not server.is_active(stored_token) and not server.is_active(contained)
