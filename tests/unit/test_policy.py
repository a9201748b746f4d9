"""Scope (RFC 6749 §3.3) and audience (RFC 8707 §2) resolution, as pure functions."""

from __future__ import annotations

import pytest

from auth_server.protocol.errors import InvalidScopeError, InvalidTargetError, UserScopeError
from auth_server.protocol.policy import (
    allowed_scopes,
    resolve_audience,
    resolve_scope,
    resolve_user_scope,
)

CLIENT = ["profile", "notes:read", "notes:write"]
NOTES = "urn:tessera:notes"
REPORTS = "https://reports.example.com/api"


def test_allowed_scopes_intersect_limits_in_the_first_limits_order_and_none_is_no_limit():
    assert allowed_scopes(CLIENT, ["notes:write", "profile", "other"]) == ["profile", "notes:write"]
    assert allowed_scopes(CLIENT, None) == CLIENT
    assert allowed_scopes(None, None) == []
    assert allowed_scopes(["a", "a", "b"]) == ["a", "b"]


@pytest.mark.parametrize("requested", [None, "", "   "])
def test_no_scope_requested_grants_every_allowed_scope(requested):
    assert resolve_scope(requested, CLIENT) == CLIENT


def test_requested_scopes_are_granted_exactly_once_each_in_request_order():
    assert resolve_scope("notes:write profile notes:write", CLIENT) == ["notes:write", "profile"]


def test_asking_for_more_than_allowed_is_an_error_not_a_silent_cut():
    with pytest.raises(InvalidScopeError, match="exceeds"):
        resolve_scope("profile admin", CLIENT)


@pytest.mark.parametrize("requested", ['pro"file', "a\\b", "profile  notes:read", "é", "a\tb"])
def test_malformed_scope_tokens_are_invalid_scope(requested):
    with pytest.raises(InvalidScopeError, match="malformed"):
        resolve_scope(requested, CLIENT)


def test_a_users_scope_is_within_the_client_and_the_user():
    assert resolve_user_scope(None, CLIENT, ["profile"]) == ["profile"]
    assert resolve_user_scope("profile", CLIENT, None) == ["profile"]
    with pytest.raises(UserScopeError, match="notes:write"):
        resolve_user_scope("notes:write", CLIENT, ["profile", "notes:read"])
    # beyond the client is the client's error, whatever the user may grant
    with pytest.raises(InvalidScopeError):
        resolve_user_scope("admin", CLIENT, ["admin"])


def test_no_resource_requested_grants_every_allowed_audience():
    assert resolve_audience([], [NOTES, REPORTS]) == [NOTES, REPORTS]


def test_a_client_without_audiences_gets_invalid_target():
    with pytest.raises(InvalidTargetError, match="not allowed any"):
        resolve_audience([], [])


def test_requested_resources_are_granted_once_each():
    assert resolve_audience([REPORTS, NOTES, REPORTS], [NOTES, REPORTS]) == [REPORTS, NOTES]


@pytest.mark.parametrize(
    "resource",
    ["notes", "https://reports.example.com/api#frag", "http://[::1", "https://other.example.com"],
)
def test_relative_fragment_malformed_or_unlisted_resources_are_invalid_target(resource):
    with pytest.raises(InvalidTargetError):
        resolve_audience([resource], [NOTES, REPORTS])
