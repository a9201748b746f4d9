"""Operators change clients and users with the CLI, never SQL: enable, update and delete a
client, list and enable users, and --json listings for scripts. Each change is checked by
what the token endpoint and introspection then answer."""

from __future__ import annotations

import json

import pytest

from tests.support import ALICE, SERVICE_APP, SPA_APP, SPA_REDIRECT, start_auth_server


@pytest.fixture
def auth(serve, make_database_url):
    # re-read client registrations at once, so a change shows on the next request
    return start_auth_server(serve, make_database_url("auth"), client_cache_seconds=0)


def cli(auth, *args: str, ok: bool = True) -> str:
    result = auth.app.test_cli_runner().invoke(args=list(args))
    assert (result.exit_code == 0) is ok, result.output
    return result.output


def service_token(auth, **form):
    return auth.token(SERVICE_APP, grant_type="client_credentials", **form)


def listed_clients(auth) -> dict[str, dict]:
    return {c["client_id"]: c for c in json.loads(cli(auth, "clients", "list", "--json"))}


def test_a_disabled_client_is_enabled_again_and_its_old_tokens_stay_revoked(auth):
    before = service_token(auth).json()["access_token"]
    cli(auth, "clients", "disable", SERVICE_APP[0])
    assert service_token(auth).status_code == 401
    assert "enabled" in cli(auth, "clients", "enable", SERVICE_APP[0])
    assert service_token(auth).status_code == 200
    assert not auth.is_active(before)
    assert listed_clients(auth)[SERVICE_APP[0]]["disabled"] is False


def test_narrowing_a_clients_scopes_revokes_its_tokens_and_refuses_the_removed_scope(auth):
    wide = service_token(auth, scope="notes:read notes:write").json()["access_token"]
    output = cli(auth, "clients", "update", SERVICE_APP[0], "--scopes", "notes:read")
    # The client's token is self-contained: not stored, not counted, inactive all the same.
    assert "revoked 0 logins and 0 access tokens" in output
    assert "self-contained tokens are inactive too" in output
    assert not auth.is_active(wide)
    assert service_token(auth, scope="notes:write").json()["error"] == "invalid_scope"
    assert service_token(auth, scope="notes:read").status_code == 200
    assert listed_clients(auth)[SERVICE_APP[0]]["scopes"] == ["notes:read"]


def test_widening_a_clients_scopes_revokes_nothing(auth):
    token = service_token(auth, scope="notes:read").json()["access_token"]
    output = cli(auth, "clients", "update", SERVICE_APP[0], "--scopes", "notes:read notes:write")
    assert "revoked" not in output
    assert auth.is_active(token)


@pytest.mark.parametrize(
    "uris",
    [
        "http://app.example.com/cb",  # http only on loopback
        "https://app.example.com/cb#fragment",
        "https://*.example.com/cb",
    ],
)
def test_an_invalid_redirect_uri_is_refused_and_nothing_changes(auth, uris):
    before = listed_clients(auth)[SPA_APP]
    output = cli(auth, "clients", "update", SPA_APP, "--redirect-uris", uris, ok=False)
    assert "Redirect URI" in output
    assert listed_clients(auth)[SPA_APP] == before


def test_redirect_uris_are_replaced_for_an_authorization_code_client_only(auth):
    new = "https://spa.example.com/new-callback"
    cli(auth, "clients", "update", SPA_APP, "--redirect-uris", f"{SPA_REDIRECT} {new}")
    assert listed_clients(auth)[SPA_APP]["redirect_uris"] == [SPA_REDIRECT, new]
    output = cli(auth, "clients", "update", SERVICE_APP[0], "--redirect-uris", new, ok=False)
    assert "authorization_code grant only" in output


def test_update_without_a_change_is_a_usage_error(auth):
    assert "nothing to change" in cli(auth, "clients", "update", SERVICE_APP[0], ok=False)


def test_a_client_is_deleted_only_once_disabled_and_takes_its_tokens_along(auth):
    token = service_token(auth).json()["access_token"]
    assert "Disable the client" in cli(auth, "clients", "delete", SERVICE_APP[0], ok=False)
    assert auth.is_active(token)
    cli(auth, "clients", "disable", SERVICE_APP[0])
    assert "deleted" in cli(auth, "clients", "delete", SERVICE_APP[0])
    assert SERVICE_APP[0] not in listed_clients(auth)
    assert service_token(auth).status_code == 401
    assert not auth.is_active(token)
    assert "No client" in cli(auth, "clients", "delete", SERVICE_APP[0], ok=False)


def test_users_list_json_shows_no_password_hash_and_enable_restores_login(auth):
    users = {u["username"]: u for u in json.loads(cli(auth, "users", "list", "--json"))}
    assert users[ALICE[0]]["disabled"] is False
    assert all("password" not in key for user in users.values() for key in user)
    cli(auth, "users", "disable", ALICE[0])
    assert (
        auth.token(grant_type="password", username=ALICE[0], password=ALICE[1]).status_code == 400
    )
    assert "enabled alice" in cli(auth, "users", "enable", ALICE[0])
    assert auth.login()["access_token"]
    assert "was not disabled" in cli(auth, "users", "enable", ALICE[0])
    assert "alice" in cli(auth, "users", "list")


def test_keys_list_json_shows_states_and_never_a_private_key(auth):
    keys = json.loads(cli(auth, "keys", "list", "--json"))
    assert sorted(k["state"] for k in keys) == ["active", "next"]
    assert all("private_key" not in k for k in keys)
