"""DPoP-bound tokens at the notes API (RFC 9449 §7), both services real HTTP servers: the
`DPoP` scheme with a proof of the token's key, and every way a request can fail to prove it,
each a 401 with a DPoP challenge and nothing stored."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import func, select

from resource_server.db import db as notes_db
from resource_server.models import DPoPProofSeen, Note
from tests.dpop_support import DPoPKey, broken_proofs, wrong_ath_proof
from tests.support import SERVICE_APP, start_resource_server

ALGS = 'algs="ES256 EdDSA Ed25519 RS256"'


def dpop_token(auth, key: DPoPKey) -> str:
    response = auth.http.post(
        f"{auth.url}/oauth/token",
        data={"grant_type": "client_credentials", "scope": "notes:read notes:write"},
        auth=SERVICE_APP,
        headers={"DPoP": key.proof("POST", f"{auth.url}/oauth/token")},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "DPoP"
    return response.json()["access_token"]


def call(api, method, path, token, proof=None, scheme="DPoP", **kwargs):
    headers = {"Authorization": f"{scheme} {token}"}
    if proof is not None:
        headers["DPoP"] = proof
    return requests.request(method, api.url + path, headers=headers, timeout=10, **kwargs)


def stored(api) -> tuple[int, int]:
    with api.app.app_context():
        return tuple(
            notes_db.session.scalar(select(func.count()).select_from(model))
            for model in (Note, DPoPProofSeen)
        )


def assert_dpop_challenge(response, error: str) -> None:
    assert response.status_code == 401, response.text
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('DPoP realm="tessera"'), challenge
    assert ALGS in challenge and f'error="{error}"' in challenge
    assert response.json()["error"] == error
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "Ed25519", "RS256"])
def test_bound_token_with_a_proof_of_its_key_reads_and_writes_notes(auth, notes_api, alg):
    key = DPoPKey(alg)
    token = dpop_token(auth, key)
    url = f"{notes_api.url}/api/notes"
    created = call(
        notes_api,
        "POST",
        "/api/notes",
        token,
        key.proof("POST", url, access_token=token),
        json={"body": "bound"},
    )
    assert created.status_code == 201, created.text
    listed = call(
        notes_api, "GET", "/api/notes?x=1", token, key.proof("GET", url, access_token=token)
    )
    assert listed.status_code == 200, listed.text
    assert [n["body"] for n in listed.json()["notes"]] == ["bound"]


def test_bearer_tokens_still_work_and_the_bare_challenge_offers_both_schemes(auth, notes_api):
    bearer = auth.token(SERVICE_APP, grant_type="client_credentials", scope="notes:read").json()
    assert bearer["token_type"] == "Bearer"
    assert notes_api.get("/api/notes", bearer["access_token"]).status_code == 200
    bare = requests.get(f"{notes_api.url}/api/notes", timeout=10)
    assert bare.status_code == 401
    assert (
        bare.headers["WWW-Authenticate"] == f'Bearer realm="tessera", DPoP realm="tessera", {ALGS}'
    )


def test_bound_token_sent_as_a_bearer_token_is_refused(auth, notes_api):
    key = DPoPKey()
    token = dpop_token(auth, key)
    url = f"{notes_api.url}/api/notes"
    for proof in (None, key.proof("GET", url, access_token=token)):
        response = call(notes_api, "GET", "/api/notes", token, proof, scheme="Bearer")
        assert_dpop_challenge(response, "invalid_token")


def test_unbound_token_sent_with_the_dpop_scheme_is_refused(auth, notes_api):
    key = DPoPKey()
    bearer = auth.token(SERVICE_APP, grant_type="client_credentials").json()["access_token"]
    url = f"{notes_api.url}/api/notes"
    response = call(
        notes_api, "GET", "/api/notes", bearer, key.proof("GET", url, access_token=bearer)
    )
    assert_dpop_challenge(response, "invalid_token")


def test_every_bad_proof_is_invalid_dpop_proof_and_stores_nothing(auth, notes_api):
    key = DPoPKey()
    token = dpop_token(auth, key)
    url = f"{notes_api.url}/api/notes"
    before = stored(notes_api)
    bad = broken_proofs(key, "POST", url, time.time())
    bad["missing proof"] = None
    bad["wrong ath"] = wrong_ath_proof(key, "POST", url, time.time())
    bad["no ath"] = key.proof("POST", url)
    bad["proof of another key"] = DPoPKey().proof("POST", url, access_token=token)
    bad["other path"] = key.proof("POST", f"{notes_api.url}/api/other", access_token=token)
    for what, proof in bad.items():
        response = call(notes_api, "POST", "/api/notes", token, proof, json={"body": what})
        assert_dpop_challenge(response, "invalid_dpop_proof")
    assert stored(notes_api) == before


def test_a_replayed_proof_is_refused(auth, notes_api):
    key = DPoPKey()
    token = dpop_token(auth, key)
    proof = key.proof("POST", f"{notes_api.url}/api/notes", access_token=token)
    first = call(notes_api, "POST", "/api/notes", token, proof, json={"body": "once"})
    assert first.status_code == 201
    replay = call(notes_api, "POST", "/api/notes", token, proof, json={"body": "twice"})
    assert_dpop_challenge(replay, "invalid_dpop_proof")
    assert stored(notes_api)[0] == 1


def test_proof_for_the_external_url_is_accepted_behind_a_trusted_proxy(
    auth, serve, make_database_url
):
    api = start_resource_server(serve, make_database_url("notes"), auth, trusted_proxies=1)
    key = DPoPKey()
    token = dpop_token(auth, key)
    external = "https://notes.example.com/api/notes"
    # What deploy/nginx.conf sends: the client's Host, and the scheme in X-Forwarded-Proto.
    forwarded = {"X-Forwarded-Proto": "https", "Host": "notes.example.com"}
    response = requests.get(
        f"{api.url}/api/notes",
        headers={
            "Authorization": f"DPoP {token}",
            "DPoP": key.proof("GET", external, access_token=token),
            **forwarded,
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    internal = requests.get(
        f"{api.url}/api/notes",
        headers={
            "Authorization": f"DPoP {token}",
            "DPoP": key.proof("GET", f"{api.url}/api/notes", access_token=token),
            **forwarded,
        },
        timeout=10,
    )
    assert_dpop_challenge(internal, "invalid_dpop_proof")


# -- one use per proof across workers and replicas ---------------------------------------------

RACERS = 12


def race(n: int, fn) -> list:
    """fn(i) in n threads released at once; the results in order."""
    barrier = threading.Barrier(n)

    def run(i):
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def test_a_proof_raced_through_three_gunicorn_workers_is_accepted_once(gunicorn_auth):
    auth = gunicorn_auth(workers=3)
    key = DPoPKey()
    proof = key.proof("POST", f"{auth.url}/oauth/token")

    def attempt(_):
        with requests.Session() as http:
            return http.post(
                f"{auth.url}/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=SERVICE_APP,
                headers={"DPoP": proof},
                timeout=30,
            )

    responses = race(RACERS, attempt)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [400] * (RACERS - 1), statuses
    assert all(r.json()["error"] == "invalid_dpop_proof" for r in responses if r.status_code == 400)


def test_a_proof_raced_through_two_replicas_of_the_notes_api_is_accepted_once(
    auth, serve, make_database_url
):
    database = make_database_url("notes")
    replicas = [start_resource_server(serve, database, auth, trusted_proxies=1) for _ in range(2)]
    key = DPoPKey()
    token = dpop_token(auth, key)
    # Both replicas answer for the same public URL (a load balancer in front): the Host header.
    public = "https://notes.example.com/api/notes"
    proof = key.proof("POST", public, access_token=token)

    def attempt(i):
        api = replicas[i % 2]
        return requests.post(
            f"{api.url}/api/notes",
            json={"body": f"racer {i}"},
            headers={
                "Authorization": f"DPoP {token}",
                "DPoP": proof,
                "Host": "notes.example.com",
                "X-Forwarded-Proto": "https",
            },
            timeout=30,
        )

    responses = race(RACERS, attempt)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [401] * (RACERS - 1), statuses
    assert stored(replicas[0])[0] == 1


def test_insufficient_scope_of_a_dpop_request_is_a_dpop_challenge(auth, notes_api):
    key = DPoPKey()
    response = auth.http.post(
        f"{auth.url}/oauth/token",
        data={"grant_type": "client_credentials", "scope": "notes:read"},
        auth=SERVICE_APP,
        headers={"DPoP": key.proof("POST", f"{auth.url}/oauth/token")},
        timeout=10,
    )
    token = response.json()["access_token"]
    url = f"{notes_api.url}/api/notes"
    refused = call(
        notes_api,
        "POST",
        "/api/notes",
        token,
        key.proof("POST", url, access_token=token),
        json={"body": "x"},
    )
    assert refused.status_code == 403
    challenge = refused.headers["WWW-Authenticate"]
    assert (
        challenge.startswith('DPoP realm="tessera"') and 'error="insufficient_scope"' in challenge
    )
    assert stored(notes_api) == (0, 0)  # the proof was not remembered either
