"""The client library with DPoP (RFC 9449) against the real services: tokens bound to its key,
API calls with proofs, refresh after invalid_token, server nonces, and the key kept in the
keyring next to the tokens."""

from __future__ import annotations

import requests

from shared.client import KeyringTokenStore, OAuthClient
from shared.client.dpop import DPoPKey
from tests.end_to_end import test_client_library as library
from tests.support import ALICE, DEMO_APP, start_auth_server, start_resource_server

# The library tests' fixtures: an AS with 2-second access tokens, a keyring in memory.
expiring = library.expiring
memory_keyring = library.memory_keyring


def dpop_client(auth, **options) -> OAuthClient:
    return OAuthClient(auth.url, *DEMO_APP, dpop=options.pop("dpop", True), **options)


def test_dpop_client_gets_bound_tokens_and_calls_the_api_with_proofs(auth, notes_api):
    client = dpop_client(auth)
    tokens = client.login_password(*ALICE)
    assert tokens.token_type == "DPoP"
    assert auth.introspect(tokens.access_token).json()["cnf"] == {"jkt": client.dpop_key.jkt}
    created = client.post(f"{notes_api.url}/api/notes", json={"body": "bound"})
    assert created.status_code == 201, created.text
    assert client.get(f"{notes_api.url}/api/notes").json()["notes"][0]["body"] == "bound"
    # Anyone who copies the token without the key gets nowhere.
    stolen = requests.get(
        f"{notes_api.url}/api/notes",
        headers={"Authorization": f"Bearer {tokens.access_token}"},
        timeout=10,
    )
    assert stolen.status_code == 401


def test_dpop_client_refreshes_after_invalid_token_and_stays_bound(expiring):
    auth, notes_api = expiring
    client = dpop_client(auth)
    first = client.login_password(*ALICE)
    library.wait_until_expired(auth, first.access_token)
    response = client.get(f"{notes_api.url}/api/me", headers={})
    assert response.status_code == 200, response.text
    assert client.tokens.access_token != first.access_token
    assert client.tokens.token_type == "DPoP"


def test_dpop_client_follows_the_servers_nonce(serve, make_database_url):
    auth = start_auth_server(serve, make_database_url("auth"), dpop_nonce_required=True)
    notes_api = start_resource_server(serve, make_database_url("notes"), auth)
    client = dpop_client(auth)
    tokens = client.login_client_credentials(scope="notes:read")
    assert tokens.token_type == "DPoP"
    assert client.get(f"{notes_api.url}/api/notes").status_code == 200


def test_dpop_key_is_kept_in_the_keyring_with_the_tokens(auth, notes_api, memory_keyring):
    client = dpop_client(auth, token_store=KeyringTokenStore("tessera-tests", "alice"))
    client.login_password(*ALICE)
    restarted = dpop_client(auth, token_store=KeyringTokenStore("tessera-tests", "alice"))
    assert restarted.dpop_key.jkt == client.dpop_key.jkt
    assert restarted.get(f"{notes_api.url}/api/me").status_code == 200
    # A given key wins over the store's.
    other = DPoPKey.generate()
    assert dpop_client(auth, dpop=other).dpop_key is other
