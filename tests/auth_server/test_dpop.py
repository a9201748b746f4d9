"""DPoP at the authorization server (RFC 9449), over real HTTP: proofs at the token endpoint,
tokens bound to the proof's key (`token_type: DPoP`, `cnf.jkt` in the JWT and in
introspection), codes bound by `dpop_jkt`, public clients' refresh tokens bound to their key,
nonces, and every kind of bad proof refused with `invalid_dpop_proof` and nothing stored."""

from __future__ import annotations

import base64
import http.client
import json
from urllib.parse import urlsplit

import pytest
import requests
from sqlalchemy import func, select

from auth_server.db import db
from auth_server.models import AccessToken, AuthorizationCode, DPoPProofSeen, RefreshToken
from tests.dpop_support import DPoPKey, broken_proofs
from tests.support import (
    DEMO_APP,
    SERVICE_APP,
    SPA_APP,
    SPA_REDIRECT,
    Browser,
    FakeClock,
    code_request,
    pkce_pair,
    query_of,
    start_auth_server,
)


def token_request(auth, key: DPoPKey | None, client=DEMO_APP, proof=None, **form):
    headers = {}
    if proof is not None:
        headers["DPoP"] = proof
    elif key is not None:
        headers["DPoP"] = key.proof("POST", f"{auth.url}/oauth/token", now=auth.clock())
    auth_ = client if isinstance(client, tuple) else None
    if not isinstance(client, tuple):
        form["client_id"] = client
    return auth.http.post(
        f"{auth.url}/oauth/token", data=form, auth=auth_, headers=headers, timeout=10
    )


def claims_of(access_token: str) -> dict:
    payload = access_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def stored_counts(auth) -> tuple[int, int, int]:
    with auth.app.app_context():
        return tuple(
            db.session.scalar(select(func.count()).select_from(model))
            for model in (AccessToken, RefreshToken, DPoPProofSeen)
        )


def assert_bound(auth, body: dict, key: DPoPKey) -> None:
    assert body["token_type"] == "DPoP"
    assert claims_of(body["access_token"])["cnf"] == {"jkt": key.jkt}
    introspection = auth.introspect(body["access_token"]).json()
    assert introspection["active"] is True
    assert introspection["cnf"] == {"jkt": key.jkt}
    assert introspection["token_type"] == "DPoP"


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "Ed25519", "RS256"])
def test_client_credentials_with_a_proof_gets_a_token_bound_to_its_key(auth, alg):
    key = DPoPKey(alg)
    response = token_request(auth, key, SERVICE_APP, grant_type="client_credentials")
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    assert_bound(auth, response.json(), key)


def test_password_grant_with_a_proof_binds_the_access_token(auth):
    key = DPoPKey()
    response = token_request(
        auth, key, grant_type="password", username="alice", password="wonderland"
    )
    assert response.status_code == 200, response.text
    assert_bound(auth, response.json(), key)


def test_without_a_proof_tokens_stay_bearer_tokens(auth):
    body = auth.login()
    assert body["token_type"] == "Bearer"
    assert "cnf" not in claims_of(body["access_token"])
    introspection = auth.introspect(body["access_token"]).json()
    assert "cnf" not in introspection and introspection["token_type"] == "Bearer"


def test_metadata_advertises_the_dpop_algorithms(auth):
    metadata = requests.get(f"{auth.url}/.well-known/oauth-authorization-server", timeout=10)
    assert metadata.json()["dpop_signing_alg_values_supported"] == [
        "ES256",
        "EdDSA",
        "Ed25519",
        "RS256",
    ]


def test_every_bad_proof_is_invalid_dpop_proof_and_stores_nothing(auth):
    key = DPoPKey()
    before = stored_counts(auth)
    url = f"{auth.url}/oauth/token"
    for what, proof in broken_proofs(key, "POST", url, auth.clock()).items():
        response = token_request(
            auth, None, SERVICE_APP, proof=proof, grant_type="client_credentials"
        )
        assert response.status_code == 400, what
        assert response.json()["error"] == "invalid_dpop_proof", what
        assert response.headers["Cache-Control"] == "no-store", what
    assert stored_counts(auth) == before


def test_a_replayed_proof_is_refused_and_issues_nothing(auth):
    key = DPoPKey()
    proof = key.proof("POST", f"{auth.url}/oauth/token", now=auth.clock())
    first = token_request(auth, None, SERVICE_APP, proof=proof, grant_type="client_credentials")
    assert first.status_code == 200
    before = stored_counts(auth)
    replay = token_request(auth, None, SERVICE_APP, proof=proof, grant_type="client_credentials")
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_dpop_proof"
    assert stored_counts(auth) == before


def test_two_dpop_headers_are_refused(auth):
    key = DPoPKey()
    url = f"{auth.url}/oauth/token"
    # requests merges repeated headers; http.client sends them as they are.
    parts = urlsplit(auth.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.putrequest("POST", "/oauth/token")
    body = b"grant_type=client_credentials&client_id=service-app&client_secret=service-app-secret"
    connection.putheader("Content-Type", "application/x-www-form-urlencoded")
    connection.putheader("Content-Length", str(len(body)))
    connection.putheader("DPoP", key.proof("POST", url, now=auth.clock()))
    connection.putheader("DPoP", key.proof("POST", url, now=auth.clock()))
    connection.endheaders(body)
    response = connection.getresponse()
    assert response.status == 400
    assert b"invalid_dpop_proof" in response.read()
    connection.close()


# -- authorization code with dpop_jkt (RFC 9449 §10) ---------------------------------------


def code_for(auth, **params) -> tuple[str, str]:
    verifier, challenge = pkce_pair()
    response = Browser(auth).login(**code_request(challenge=challenge, **params))
    assert response.status_code == 303, response.text
    return query_of(response.headers["Location"])["code"], verifier


def exchange(auth, key, code, verifier):
    return token_request(
        auth,
        key,
        SPA_APP,
        grant_type="authorization_code",
        code=code,
        redirect_uri=SPA_REDIRECT,
        code_verifier=verifier,
    )


def test_code_bound_by_dpop_jkt_needs_the_same_key_and_stays_usable_until_then(auth):
    key = DPoPKey()
    code, verifier = code_for(auth, dpop_jkt=key.jkt)
    for presenter in (None, DPoPKey()):
        refused = exchange(auth, presenter, code, verifier)
        assert refused.status_code == 400
        assert refused.json()["error"] == "invalid_grant"
    with auth.app.app_context():
        row = db.session.scalar(select(AuthorizationCode))
        assert row.consumed_at is None and row.dpop_jkt == key.jkt
    accepted = exchange(auth, key, code, verifier)
    assert accepted.status_code == 200, accepted.text
    assert_bound(auth, accepted.json(), key)


def test_malformed_dpop_jkt_is_invalid_request_at_the_authorization_endpoint(auth):
    _, challenge = pkce_pair()
    response = Browser(auth).authorize(**code_request(challenge=challenge, dpop_jkt="short"))
    assert response.status_code == 302
    assert query_of(response.headers["Location"])["error"] == "invalid_request"


# -- refresh tokens of public clients are bound (RFC 9449 §5) ---------------------------------


def test_public_client_refresh_needs_the_key_it_logged_in_with(auth):
    key = DPoPKey()
    code, verifier = code_for(auth)
    login = exchange(auth, key, code, verifier).json()
    assert login["token_type"] == "DPoP"
    before = stored_counts(auth)
    for presenter in (None, DPoPKey()):
        refused = token_request(
            auth,
            presenter,
            SPA_APP,
            grant_type="refresh_token",
            refresh_token=login["refresh_token"],
        )
        assert refused.status_code == 400
        assert refused.json()["error"] == "invalid_grant"
    # nothing consumed nor revoked: only the two proofs' jtis were remembered
    assert stored_counts(auth)[:2] == before[:2]
    assert auth.is_active(login["refresh_token"])
    refreshed = token_request(
        auth, key, SPA_APP, grant_type="refresh_token", refresh_token=login["refresh_token"]
    )
    assert refreshed.status_code == 200, refreshed.text
    assert_bound(auth, refreshed.json(), key)


def test_confidential_client_refresh_is_not_bound_to_a_key(auth):
    key = DPoPKey()
    login = token_request(
        auth, key, grant_type="password", username="alice", password="wonderland"
    ).json()
    refreshed = auth.refresh(login["refresh_token"])
    assert refreshed.status_code == 200
    assert refreshed.json()["token_type"] == "Bearer"


# -- nonces (RFC 9449 §8) -------------------------------------------------------------------


def test_with_nonces_required_a_proof_without_the_nonce_gets_use_dpop_nonce(
    serve, make_database_url
):
    auth = start_auth_server(serve, make_database_url("auth"), dpop_nonce_required=True)
    key = DPoPKey()
    url = f"{auth.url}/oauth/token"
    first = token_request(auth, key, SERVICE_APP, grant_type="client_credentials")
    assert first.status_code == 400
    assert first.json()["error"] == "use_dpop_nonce"
    assert first.headers["Cache-Control"] == "no-store"
    nonce = first.headers["DPoP-Nonce"]
    wrong = token_request(
        auth,
        None,
        SERVICE_APP,
        proof=key.proof("POST", url, nonce="not-the-nonce"),
        grant_type="client_credentials",
    )
    assert wrong.json()["error"] == "use_dpop_nonce"
    retry = token_request(
        auth,
        None,
        SERVICE_APP,
        proof=key.proof("POST", url, nonce=nonce),
        grant_type="client_credentials",
    )
    assert retry.status_code == 200, retry.text
    assert retry.headers["DPoP-Nonce"]
    assert_bound(auth, retry.json(), key)


# -- the replay table stays small ----------------------------------------------------------


def seen_rows(auth) -> int:
    return stored_counts(auth)[2]


def test_seen_proofs_are_pruned_once_stale_and_by_tokens_purge(serve, make_database_url):
    clock = FakeClock()
    auth = start_auth_server(serve, make_database_url("auth"), clock=clock, access_token_ttl=600)
    key = DPoPKey()
    url = f"{auth.url}/oauth/token"

    def use_proof():
        proof = key.proof("POST", url, now=clock())
        response = token_request(
            auth, None, SERVICE_APP, proof=proof, grant_type="client_credentials"
        )
        assert response.status_code == 200, response.text

    use_proof()
    assert seen_rows(auth) == 1
    clock.advance(120)  # past the first proof's freshness, and past the prune interval
    use_proof()
    assert seen_rows(auth) == 1  # the stale row went when the worker pruned
    clock.advance(120)
    result = auth.app.test_cli_runner().invoke(args=["tokens", "purge"])
    assert result.exit_code == 0, result.output
    assert seen_rows(auth) == 0
